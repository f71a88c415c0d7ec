package gang

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"
)

// Shared is the gang state of one scheduler process, which the Gang plugin
// of every profile uses: the gangs' plans (so that gangs of every profile
// hold capacity aside for each other and one gang never has two plans), the
// PodGroup watch, the status writer and the profiles the process serves.
// The framework builds one plugin per profile; they must not each keep
// their own view of the same nodes and gangs.
type Shared struct {
	plans *planStore
	// evictions are the victims chosen lately, until their deletion shows.
	evictions *evictions
	// ctx is the scheduler's, for work that outlives a scheduling cycle
	// (evictions).
	ctx context.Context

	once       sync.Once
	startErr   error
	sweepOnce  sync.Once
	pgInformer cache.SharedIndexInformer
	pgLister   pglisters.PodGroupLister
	pgClient   pgclientset.Interface
	// allPods are the pods of every gang, finished ones included (the
	// scheduler's own informer leaves out Succeeded and Failed pods).
	allPods  cache.Indexer
	recorder record.EventRecorder
	// inference makes gangs of the pods whose owners ask for one.
	inference *inference
	// jobSetsServed, lwsServed and pyTorchJobsServed say whether the
	// cluster served the JobSet, LeaderWorkerSet and PyTorchJob APIs when
	// the scheduler started (their events are watched only then).
	jobSetsServed, lwsServed, pyTorchJobsServed bool
	status                                      *statusReporter
	metrics                                     *gangMetrics
	clock                                       clock.WithTicker

	mu       sync.RWMutex
	profiles sets.Set[string]
	// schedulable is when each gang pod was first seen schedulable (created
	// or its scheduling gates lifted), the start of its gang's time to
	// bound: finer than creation timestamps, which have 1 s resolution.
	schedulable map[types.UID]time.Time
}

// NewShared returns the gang state of one scheduler process.
func NewShared() *Shared {
	return &Shared{plans: newPlanStore(), evictions: newEvictions(), profiles: sets.New[string](), clock: clock.RealClock{}, schedulable: map[types.UID]time.Time{}}
}

// schedulableSince returns when the pod was first seen schedulable, or its
// creation time if it was before this scheduler started.
func (s *Shared) schedulableSince(pod *v1.Pod) time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t, ok := s.schedulable[pod.UID]; ok {
		return t
	}
	return pod.CreationTimestamp.Time
}

// trackSchedulable keeps schedulable up to date from the gang pods' events.
func (s *Shared) trackSchedulable(podInformer cache.SharedIndexInformer) {
	seen := func(pod *v1.Pod) {
		if len(pod.Spec.SchedulingGates) > 0 || pod.Spec.NodeName != "" {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.schedulable[pod.UID]; !ok {
			s.schedulable[pod.UID] = s.clock.Now()
		}
	}
	_, _ = podInformer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initialList bool) {
			// Pods listed at start-up came before: their creation time stands.
			if pod, ok := obj.(*v1.Pod); ok && !initialList {
				seen(pod)
			}
		},
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*v1.Pod); ok {
				seen(pod)
			}
		},
		DeleteFunc: func(obj any) {
			if pod, ok := unwrapDeleted(obj).(*v1.Pod); ok {
				s.mu.Lock()
				defer s.mu.Unlock()
				delete(s.schedulable, pod.UID)
			}
		},
	})
}

// start connects the shared state to the cluster on the first profile's
// plugin; later profiles get its outcome.
func (s *Shared) start(ctx context.Context, handle fwk.Handle) error {
	s.once.Do(func() { s.startErr = s.connect(ctx, handle) })
	return s.startErr
}

func (s *Shared) connect(ctx context.Context, handle fwk.Handle) error {
	s.ctx = ctx
	// The scheduler talks protobuf to the apiserver; a CRD (PodGroup)
	// takes JSON only.
	config := rest.CopyConfig(handle.KubeConfig())
	config.ContentType = runtime.ContentTypeJSON
	config.AcceptContentTypes = runtime.ContentTypeJSON
	pgClient, err := pgclientset.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("creating PodGroup client: %w", err)
	}
	pgFactory := pginformers.NewSharedInformerFactory(pgClient, 0)
	pgInformer := pgFactory.Scheduling().V1alpha1().PodGroups()
	s.pgLister, s.pgClient, s.pgInformer = pgInformer.Lister(), pgClient, pgInformer.Informer()
	coreClient, err := kubernetes.NewForConfig(handle.KubeConfig())
	if err != nil {
		return fmt.Errorf("creating pod client: %w", err)
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(coreClient, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = schedv1alpha1.PodGroupLabel }))
	podInformer := podFactory.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{gangIndex: indexByGang}); err != nil {
		return fmt.Errorf("indexing gang pods: %w", err)
	}
	s.allPods = podInformer.GetIndexer()
	pgFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.pgInformer.HasSynced, podInformer.HasSynced) {
		return fmt.Errorf("plugin %s: PodGroup and gang pod informers did not sync", Name)
	}
	// Events go through a client of their own, as kube-scheduler's do, so
	// that they never queue up in front of bindings.
	eventClient, err := kubernetes.NewForConfig(handle.KubeConfig())
	if err != nil {
		return fmt.Errorf("creating event client: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
	}()
	s.recorder = broadcaster.NewRecorder(clientgoscheme.Scheme, v1.EventSource{Component: "tessera-scheduler"})
	s.metrics = registerMetrics()
	// Requested before the scheduler starts its informers, so started and
	// synced with them.
	cached, live, err := s.connectOwners(ctx, handle.SharedInformerFactory().Batch().V1().Jobs().Lister(), coreClient, config)
	if err != nil {
		return err
	}
	s.inference = newInference(cached, live)
	s.status = newStatusReporter(ctx, s, podInformer)
	s.trackSchedulable(podInformer)
	pruneOnDelete(s, s.pgInformer, podInformer, handle.SharedInformerFactory().Core().V1().Pods().Informer())
	return nil
}

// addProfile records a profile (scheduler name) the process serves.
func (s *Shared) addProfile(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.profiles.Insert(name)
}

// serves reports whether any of the pods names one of the process's
// profiles: only such gangs are this scheduler's to write status for.
func (s *Shared) serves(pods []*v1.Pod) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range pods {
		if s.profiles.Has(p.Spec.SchedulerName) {
			return true
		}
	}
	return false
}

// pruneOnDelete keeps the plan store no larger than the live gangs and
// pods: a deleted PodGroup takes its plan and failure records with it, a
// deleted member leaves its gang's plan (a plan with no member left goes),
// and a deleted lone pod takes its failed preemption with it.
func pruneOnDelete(s *Shared, pgInformer, gangPodInformer, schedulerPodInformer cache.SharedIndexInformer) {
	_, _ = pgInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if pg, ok := unwrapDeleted(obj).(*schedv1alpha1.PodGroup); ok {
			s.plans.forgetGang(gangKey{pg.Namespace, pg.Name})
		}
	}})
	_, _ = gangPodInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if pod, ok := unwrapDeleted(obj).(*v1.Pod); ok {
			if key, ok := gangOf(pod); ok {
				s.plans.dropMember(key, pod.UID)
			}
		}
	}})
	_, _ = schedulerPodInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if pod, ok := unwrapDeleted(obj).(*v1.Pod); ok {
			if _, inGang := gangOf(pod); !inGang {
				s.plans.forgetFailure(preemptionKey(lonePodKey(pod)))
			}
		}
	}})
}

// unwrapDeleted returns the object of a delete event, also when the informer
// missed the deletion and hands over its last known state.
func unwrapDeleted(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}
