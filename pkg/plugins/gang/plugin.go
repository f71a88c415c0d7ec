// Package gang is Tessera's all-or-nothing scheduling plugin over the
// PodGroup API of sigs.k8s.io/scheduler-plugins (scheduling.x-k8s.io/v1alpha1,
// pod label scheduling.x-k8s.io/pod-group), so workloads written for
// coscheduling run unchanged.
//
// Unlike coscheduling, a gang's placement is planned as one decision: when
// its first member reaches PreFilter, the plugin places every pending member
// on a copy of the scheduler's snapshot, running the profile's own PreFilter
// and Filter plugins for each, with the members already planned counted on
// their nodes and the unreserved plans of other gangs held aside. Members
// then follow the plan (PreFilter narrows each to its planned node) and wait
// at Permit only for each other; if any member fails or the gang's timeout
// passes, every member still waiting is rejected and the plan dropped, so
// no partial gang holds resources. A gang with no plan is rejected at once
// and retried on cluster events that can make it fit.
package gang

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
)

// Name is the plugin's name in the registry and in profiles.
const Name = "Gang"

// Gang is the plugin. State that describes the cluster (plans, PodGroups,
// status) lives in Shared, once per process; only args are per profile.
type Gang struct {
	handle   fwk.Handle
	args     *configv1alpha1.GangArgs
	shared   *Shared
	pgLister pglisters.PodGroupLister
	// pdbLister reads PodDisruptionBudgets for preemption.
	pdbLister policylisters.PodDisruptionBudgetLister
	// pods is the scheduler's pod informer's indexer, with gangIndex.
	pods  cache.Indexer
	clock clock.Clock

	// orderers may hold a NodeOrderer of this profile for gang plans.
	orderers *Orderers
	plans    *planStore
	status   *statusReporter
	recorder record.EventRecorder
	metrics  *gangMetrics
}

var (
	_ fwk.QueueSortPlugin   = &Gang{}
	_ fwk.PreEnqueuePlugin  = &Gang{}
	_ fwk.PreFilterPlugin   = &Gang{}
	_ fwk.PostFilterPlugin  = &Gang{}
	_ fwk.ReservePlugin     = &Gang{}
	_ fwk.PermitPlugin      = &Gang{}
	_ fwk.PostBindPlugin    = &Gang{}
	_ fwk.EnqueueExtensions = &Gang{}
	_ fwk.SignPlugin        = &Gang{}
)

// Factory returns the plugin's constructor. Every profile's plugin shares
// shared; its gang plans take their node order from the profile's
// NodeOrderer in orderers, if one is set.
func Factory(shared *Shared, orderers *Orderers) func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) {
	return func(ctx context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		return newGang(ctx, obj, handle, shared, orderers)
	}
}

// newGang builds one profile's plugin. Invalid args fail scheduler start-up.
func newGang(ctx context.Context, obj runtime.Object, handle fwk.Handle, shared *Shared, orderers *Orderers) (*Gang, error) {
	args, err := configv1alpha1.DecodeGangArgs(obj)
	if err != nil {
		return nil, err
	}
	if _, ok := handle.(preFilterRunner); !ok {
		return nil, fmt.Errorf("plugin %s needs a framework that can run PreFilter plugins for its gang plans", Name)
	}
	podInformer := handle.SharedInformerFactory().Core().V1().Pods().Informer()
	// Profiles share the informer: the first Gang plugin adds the index.
	if _, indexed := podInformer.GetIndexer().GetIndexers()[gangIndex]; !indexed {
		if err := podInformer.AddIndexers(cache.Indexers{gangIndex: indexByGang}); err != nil {
			return nil, fmt.Errorf("indexing pods by gang: %w", err)
		}
	}
	if err := shared.start(ctx, handle); err != nil {
		return nil, err
	}
	shared.addProfile(handle.ProfileName())
	g := &Gang{
		handle:   handle,
		args:     args,
		shared:   shared,
		pgLister: shared.pgLister,
		// Requested before the scheduler starts its informers, so started with them.
		pdbLister: handle.SharedInformerFactory().Policy().V1().PodDisruptionBudgets().Lister(),
		pods:      podInformer.GetIndexer(),
		clock:     shared.clock,
		orderers:  orderers,
		plans:     shared.plans,
		status:    shared.status,
		recorder:  shared.recorder,
		metrics:   shared.metrics,
	}
	if err := g.watchArrivals(ctx); err != nil {
		return nil, err
	}
	shared.sweepOnce.Do(func() { go shared.sweepPartlyBound(ctx, g, sweepInterval) })
	klog.FromContext(ctx).Info("Gang plugin ready", "profile", handle.ProfileName(), "defaultScheduleTimeoutSeconds", *args.DefaultScheduleTimeoutSeconds, "preemption", *args.Preemption)
	return g, nil
}

// Name returns the plugin's name.
func (g *Gang) Name() string { return Name }

// SignPod keeps gang members out of the scheduler's opportunistic batching
// (each follows its gang's plan); other pods are no concern of the plugin.
func (g *Gang) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	if _, ok := gangOf(pod); ok {
		return nil, fwk.NewStatus(fwk.Unschedulable, "gang members follow their gang's plan")
	}
	return nil, nil
}

// gangKey names a PodGroup.
type gangKey struct{ namespace, name string }

func (k gangKey) String() string { return k.namespace + "/" + k.name }

// cutKey splits a gangKey's String form.
func cutKey(s string) (namespace, name string, ok bool) { return strings.Cut(s, "/") }

// gangOf returns the gang a pod belongs to, if any.
func gangOf(pod *v1.Pod) (gangKey, bool) {
	name, ok := pod.Labels[schedv1alpha1.PodGroupLabel]
	if !ok || name == "" {
		return gangKey{}, false
	}
	return gangKey{pod.Namespace, name}, true
}

// timeout is how long the gang's placed members may wait for the rest.
func (g *Gang) timeout(pg *schedv1alpha1.PodGroup) time.Duration {
	if pg.Spec.ScheduleTimeoutSeconds != nil && *pg.Spec.ScheduleTimeoutSeconds > 0 {
		return time.Duration(*pg.Spec.ScheduleTimeoutSeconds) * time.Second
	}
	return time.Duration(*g.args.DefaultScheduleTimeoutSeconds) * time.Second
}
