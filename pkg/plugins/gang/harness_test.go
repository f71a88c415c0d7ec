package gang

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkplugins "k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"
)

// harness runs the Gang plugin inside a real scheduler framework (the
// in-tree plugins of the default profile plus Gang, as the shipped profile
// enables it) over a scheduler cache and snapshot the test fills, with a
// fake clientset that records what the plugin writes. It replaces the
// apiserver and the queue only.
type harness struct {
	t        *testing.T
	ctx      context.Context
	fw       framework.Framework
	gang     *Gang
	cache    internalcache.Cache
	snapshot *internalcache.Snapshot
	client   *fake.Clientset
	// jobs are the Jobs the scheduler's informer holds.
	jobs cache.Indexer
	pgs  cache.Indexer
	// pods is the scheduler's pod informer's store (what members() reads).
	pods      cache.Indexer
	pdbs      cache.Indexer
	clock     *clocktesting.FakeClock
	nodes     map[string]*v1.Node
	nominated *nominator
	created   int
}

const harnessProfile = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tessera-scheduler
  plugins:
    multiPoint:
      enabled: [{name: Gang}]
      disabled: [{name: PrioritySort}, {name: DefaultPreemption}, {name: DynamicResources}]
  pluginConfig:
  - name: Gang
    args: {defaultScheduleTimeoutSeconds: 60, preemption: true}
`

func newHarness(t *testing.T) *harness {
	t.Helper()
	schedmetrics.Register() // the scheduler cache reports to them
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, cache: internalcache.New(ctx, nil, false), snapshot: internalcache.NewEmptySnapshot(),
		client: fake.NewClientset(), clock: clocktesting.NewFakeClock(t0), nodes: map[string]*v1.Node{},
		nominated: &nominator{byNode: map[string][]fwk.PodInfo{}}}
	obj, _, err := scheme.Codecs.UniversalDecoder().Decode([]byte(harnessProfile), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	profile := &obj.(*config.KubeSchedulerConfiguration).Profiles[0]
	profile.PercentageOfNodesToScore = ptr.To[int32](100)

	pgClient := pgfake.NewSimpleClientset()
	pgInformer := pginformers.NewSharedInformerFactory(pgClient, 0).Scheduling().V1alpha1().PodGroups()
	h.pgs = pgInformer.Informer().GetIndexer()
	allPods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{gangIndex: indexByGang})
	shared := NewShared()
	shared.clock = h.clock
	informerFactory := informers.NewSharedInformerFactory(h.client, 0)
	// Everything connect would build from a live apiserver, from fakes.
	shared.once.Do(func() {
		shared.ctx = ctx
		shared.pgInformer, shared.pgLister, shared.pgClient = pgInformer.Informer(), pgInformer.Lister(), pgClient
		shared.allPods = allPods
		shared.recorder = record.NewFakeRecorder(1000)
		shared.metrics = registerMetrics()
		shared.status = newStatusReporter(ctx, shared, informerFactory.Core().V1().Pods().Informer())
		shared.inference = newInference(cachedOwners{jobs: informerFactory.Batch().V1().Jobs().Lister()}, liveOwners{ctx: ctx, core: h.client})
	})
	shared.sweepOnce.Do(func() {}) // tests drive every cycle themselves
	registry := frameworkplugins.NewInTreeRegistry()
	registry[Name] = func(ctx context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		g, err := newGang(ctx, obj, handle, shared, NewOrderers())
		h.gang = g
		return g, err
	}
	h.fw, err = frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(h.client),
		frameworkruntime.WithInformerFactory(informerFactory),
		frameworkruntime.WithSnapshotSharedLister(h.snapshot),
		frameworkruntime.WithEventRecorder(&events.FakeRecorder{}),
		frameworkruntime.WithWaitingPods(frameworkruntime.NewWaitingPodsMap()),
		frameworkruntime.WithPodNominator(h.nominated),
		frameworkruntime.WithParallelism(1),
	)
	if err != nil {
		t.Fatal(err)
	}
	h.pods = informerFactory.Core().V1().Pods().Informer().GetIndexer()
	h.pdbs = informerFactory.Policy().V1().PodDisruptionBudgets().Informer().GetIndexer()
	h.jobs = informerFactory.Batch().V1().Jobs().Informer().GetIndexer()
	return h
}

// nominator holds the nominations a test makes (nominate); the plugin's
// own are read from PostFilter's result, not recorded.
type nominator struct{ byNode map[string][]fwk.PodInfo }

// AddNominatedPod records an override, as the scheduler's nominator does.
func (n *nominator) AddNominatedPod(_ klog.Logger, pi fwk.PodInfo, ni *fwk.NominatingInfo) {
	n.DeleteNominatedPodIfExists(pi.GetPod())
	if ni.Mode() == fwk.ModeOverride && ni.NominatedNodeName != "" {
		n.byNode[ni.NominatedNodeName] = append(n.byNode[ni.NominatedNodeName], pi)
	}
}
func (n *nominator) DeleteNominatedPodIfExists(p *v1.Pod) {
	for node, pods := range n.byNode {
		n.byNode[node] = slices.DeleteFunc(pods, func(pi fwk.PodInfo) bool { return pi.GetPod().UID == p.UID })
	}
}
func (*nominator) UpdateNominatedPod(klog.Logger, *v1.Pod, fwk.PodInfo) {}
func (n *nominator) NominatedPodsForNode(node string) []fwk.PodInfo     { return n.byNode[node] }

// nominate nominates pod to node, as a preemptor waiting for its victims.
func (h *harness) nominate(p *v1.Pod, node string) {
	h.t.Helper()
	p.Status.NominatedNodeName = node
	pi, err := framework.NewPodInfo(p)
	if err != nil {
		h.t.Fatal(err)
	}
	h.nominated.byNode[node] = append(h.nominated.byNode[node], pi)
}

func (h *harness) sync() {
	h.t.Helper()
	if err := h.cache.UpdateSnapshot(klog.Background(), h.snapshot); err != nil {
		h.t.Fatal(err)
	}
}

// node adds an 8-GPU node.
func (h *harness) node(name string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("96"), v1.ResourceMemory: resource.MustParse("1Ti"),
			v1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": resource.MustParse("8"),
		}}}
	n.Status.Capacity = n.Status.Allocatable
	h.nodes[name] = n
	h.cache.AddNode(klog.Background(), n)
	h.sync()
	return n
}

func (h *harness) cordon(name string) {
	old := h.nodes[name]
	n := old.DeepCopy()
	n.Spec.Unschedulable = true
	h.nodes[name] = n
	h.cache.UpdateNode(klog.Background(), old, n)
	h.sync()
}

// pod makes a pod asking gpus GPUs, in gang if not "", at priority prio.
func (h *harness) pod(name, gang string, gpus int64, prio int32) *v1.Pod {
	h.created++
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), Labels: map[string]string{},
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(h.created) * time.Millisecond))},
		Spec: v1.PodSpec{SchedulerName: "tessera-scheduler", Priority: ptr.To(prio), Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)},
				Limits: v1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}}}}},
	}
	if gang != "" {
		p.Labels[schedv1alpha1.PodGroupLabel] = gang
	}
	if err := h.pods.Add(p); err != nil {
		h.t.Fatal(err)
	}
	if err := h.gang.shared.allPods.Add(p); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// running puts pod on node as bound and running.
func (h *harness) running(p *v1.Pod, node string) *v1.Pod {
	p.Spec.NodeName = node
	p.Status.Phase = v1.PodRunning
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(h.clock.Now())}}
	if err := h.pods.Update(p); err != nil {
		h.t.Fatal(err)
	}
	if err := h.cache.AddPod(klog.Background(), p); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.client.CoreV1().Pods(p.Namespace).Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.sync()
	return p
}

// waiting reserves pod on node and runs Permit, where a gang member with
// mates still to come waits: the scheduler's cache holds it there, assumed.
// terminating marks a running pod as deleted gracefully and still
// leaving, as the cache shows it during its grace period.
func (h *harness) terminating(p *v1.Pod) {
	h.t.Helper()
	leaving := p.DeepCopy()
	leaving.DeletionTimestamp = ptr.To(metav1.NewTime(h.clock.Now()))
	if err := h.cache.UpdatePod(klog.Background(), p, leaving); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waiting(p *v1.Pod, node string) *v1.Pod {
	h.t.Helper()
	p.Spec.NodeName = node
	if err := h.cache.AssumePod(klog.Background(), p); err != nil {
		h.t.Fatal(err)
	}
	state := framework.NewCycleState()
	if status := h.gang.Reserve(h.ctx, state, p, node); !status.IsSuccess() {
		h.t.Fatalf("Reserve: %v", status)
	}
	waits, status := h.fw.RunPermitPlugins(h.ctx, state, p, node)
	if status.Code() != fwk.Wait {
		h.t.Fatalf("Permit = %v, want Wait", status)
	}
	h.fw.AddWaitingPod(p, waits)
	h.sync()
	return p
}

func (h *harness) podGroup(name string, minMember int32) {
	pg := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(t0)},
		Spec: schedv1alpha1.PodGroupSpec{MinMember: minMember, ScheduleTimeoutSeconds: ptr.To[int32](60)}}
	if err := h.pgs.Add(pg); err != nil {
		h.t.Fatal(err)
	}
}

// preFilter runs the profile's PreFilter plugins for pod, as a scheduling
// cycle does.
func (h *harness) preFilter(p *v1.Pod) (*fwk.PreFilterResult, *fwk.Status) {
	h.t.Helper()
	h.sync()
	result, status, _ := h.fw.RunPreFilterPlugins(h.ctx, framework.NewCycleState(), p)
	return result, status
}

// postFilter runs the Gang plugin's PostFilter for pod.
func (h *harness) postFilter(p *v1.Pod) (*fwk.PostFilterResult, *fwk.Status) {
	h.t.Helper()
	h.sync()
	return h.gang.PostFilter(h.ctx, framework.NewCycleState(), p, nil)
}

// deleted waits for the pods the plugin deletes (evictions are
// asynchronous) and returns their names once want of them are deleted, or
// what was deleted by the deadline.
func (h *harness) deleted(want int) sets.Set[string] {
	h.t.Helper()
	names := sets.New[string]()
	_ = wait.PollUntilContextTimeout(h.ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		names = sets.New[string]()
		for _, a := range h.client.Actions() {
			if d, ok := a.(clienttesting.DeleteAction); ok && a.GetResource().Resource == "pods" {
				names.Insert(d.GetName())
			}
		}
		return names.Len() >= want, nil
	})
	return names
}

// planned runs PreFilter for pod and returns the one node it is sent to.
func (h *harness) planned(p *v1.Pod) string {
	t := h.t
	t.Helper()
	result, status := h.preFilter(p)
	if !status.IsSuccess() {
		t.Fatalf("PreFilter: %v", status)
	}
	if result == nil || result.AllNodes() || result.NodeNames.Len() != 1 {
		t.Fatalf("PreFilter result %v, want one planned node", result)
	}
	return result.NodeNames.UnsortedList()[0]
}

func setOf(names ...string) sets.Set[string] { return sets.New(names...) }
