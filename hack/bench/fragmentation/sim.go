package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/openb"
	"tessera.dev/tessera/pkg/podgpu"
)

// simulator replays pods one at a time through one profile of the real
// scheduler framework, as kube-scheduler's scheduling and binding cycles
// do, minus the queue and the apiserver: the scheduler cache and its
// incremental snapshot, PreFilter, Filter on every node, PreScore, Score
// and NormalizeScore with the profile's weights, the highest total (ties
// broken at random, as kube-scheduler does), assume, Reserve, Permit,
// PreBind and the Bind plugins. Bindings go to a fake clientset, which
// hands them back; the bound pod, with the binding's annotations copied as
// the apiserver copies them, then confirms the assumed pod in the cache,
// as the pod informer would. A pod that fits nowhere is not retried (the
// paper's protocol).
type simulator struct {
	fw       framework.Framework
	cache    internalcache.Cache
	snapshot *internalcache.Snapshot
	bindings map[types.UID]*v1.Binding
	rng      *rand.Rand
	logger   klog.Logger
}

func newSimulator(ctx context.Context, registry frameworkruntime.Registry, profile *config.KubeSchedulerProfile, nodes []*v1.Node, seed uint64) (*simulator, error) {
	s := &simulator{
		cache:    internalcache.New(ctx, nil, false),
		snapshot: internalcache.NewEmptySnapshot(),
		bindings: map[types.UID]*v1.Binding{},
		rng:      rand.New(rand.NewPCG(seed, 0x5eed)),
		logger:   klog.FromContext(ctx),
	}
	client := fake.NewClientset()
	client.PrependReactor("create", "pods", func(action clienttesting.Action) (bool, runtime.Object, error) {
		create, ok := action.(clienttesting.CreateAction)
		if !ok || action.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := create.GetObject().(*v1.Binding)
		s.bindings[b.UID] = b
		return true, b, nil
	})
	fw, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)),
		frameworkruntime.WithSnapshotSharedLister(s.snapshot),
		frameworkruntime.WithEventRecorder(&events.FakeRecorder{}),
		frameworkruntime.WithParallelism(1),
	)
	if err != nil {
		return nil, err
	}
	s.fw = fw
	for _, n := range nodes {
		s.cache.AddNode(s.logger, n)
	}
	return s, nil
}

// schedule places one pod; "" if it fits nowhere.
func (s *simulator) schedule(ctx context.Context, pod *v1.Pod) (string, error) {
	if err := s.cache.UpdateSnapshot(s.logger, s.snapshot); err != nil {
		return "", err
	}
	state := framework.NewCycleState()
	pre, status, _ := s.fw.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() {
		return "", rejected(status)
	}
	all, err := s.snapshot.NodeInfos().List()
	if err != nil {
		return "", err
	}
	var feasible []fwk.NodeInfo
	for _, n := range all {
		if pre != nil && !pre.AllNodes() && !pre.NodeNames.Has(n.Node().Name) {
			continue
		}
		if st := s.fw.RunFilterPlugins(ctx, state, pod, n); st.IsSuccess() {
			feasible = append(feasible, n)
		} else if !st.IsRejected() {
			return "", st.AsError()
		}
	}
	var node string
	switch len(feasible) {
	case 0:
		return "", nil
	case 1:
		// kube-scheduler skips scoring with a single feasible node.
		node = feasible[0].Node().Name
	default:
		if st := s.fw.RunPreScorePlugins(ctx, state, pod, feasible); !st.IsSuccess() {
			return "", st.AsError()
		}
		scores, st := s.fw.RunScorePlugins(ctx, state, pod, feasible)
		if !st.IsSuccess() {
			return "", st.AsError()
		}
		node = s.selectHost(scores)
	}
	return node, s.bind(ctx, state, pod, node)
}

// selectHost takes the highest total score, ties broken uniformly at random.
func (s *simulator) selectHost(scores []fwk.NodePluginScores) string {
	best, ties := scores[0], 1
	for _, sc := range scores[1:] {
		switch {
		case sc.TotalScore > best.TotalScore:
			best, ties = sc, 1
		case sc.TotalScore == best.TotalScore:
			ties++
			if s.rng.IntN(ties) == 0 {
				best = sc
			}
		}
	}
	return best.Name
}

// bind runs the scheduling cycle's tail and the binding cycle for the pod
// on node, and confirms the bound pod in the cache.
func (s *simulator) bind(ctx context.Context, state fwk.CycleState, pod *v1.Pod, node string) error {
	assumed := pod.DeepCopy()
	assumed.Spec.NodeName = node
	if err := s.cache.AssumePod(s.logger, assumed); err != nil {
		return err
	}
	fail := func(st *fwk.Status, stage string) error {
		s.fw.RunReservePluginsUnreserve(ctx, state, assumed, node)
		if err := s.cache.ForgetPod(s.logger, assumed); err != nil {
			return err
		}
		return fmt.Errorf("%s of pod %s on %s: %w", stage, pod.Name, node, st.AsError())
	}
	if st := s.fw.RunReservePluginsReserve(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "reserve")
	}
	if _, st := s.fw.RunPermitPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "permit")
	}
	if st := s.fw.RunPreBindPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "pre-bind")
	}
	if st := s.fw.RunBindPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "bind")
	}
	b, ok := s.bindings[pod.UID]
	if !ok {
		return fmt.Errorf("pod %s: no binding reached the client", pod.Name)
	}
	bound := assumed.DeepCopy()
	for k, v := range b.Annotations {
		if bound.Annotations == nil {
			bound.Annotations = map[string]string{}
		}
		bound.Annotations[k] = v
	}
	return s.cache.AddPod(s.logger, bound)
}

// rejected turns a PreFilter rejection into "no node" and anything else
// into an error.
func rejected(st *fwk.Status) error {
	if st.IsRejected() {
		return nil
	}
	return st.AsError()
}

// kubeNode is an openb node as a Node: its CPU, memory and GPU count
// allocatable, room for any number of pods.
func kubeNode(n openb.Node) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU:     *resource.NewMilliQuantity(n.CPUMilli, resource.DecimalSI),
			v1.ResourceMemory:  *resource.NewQuantity(n.MemoryMiB<<20, resource.BinarySI),
			v1.ResourcePods:    *resource.NewQuantity(10000, resource.DecimalSI),
			podgpu.ResourceGPU: *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI),
		}},
	}
}

// nodeTopology is what a node agent would publish for an openb node: its
// GPUs by index, model and health. The trace says nothing of NVLink, so
// there are no links.
func nodeTopology(n openb.Node, now time.Time) *tesserav1alpha1.GPUNodeTopology {
	t := &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}
	for i := range n.GPUs {
		t.Status.Devices = append(t.Status.Devices, tesserav1alpha1.GPUDevice{
			Index: int32(i), UUID: "GPU-" + n.Name + "-" + strconv.Itoa(i), Model: n.Model, Healthy: true,
		})
	}
	t.Status.HeartbeatTime = &metav1.Time{Time: now}
	return t
}

// kubePod is an openb pod as a Pod: CPU and memory requests, whole GPUs as
// nvidia.com/gpu, a share as tessera.dev/gpu-milli, gpu_spec as
// tessera.dev/gpu-models.
func kubePod(p openb.Pod, uid string) *v1.Pod {
	requests := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(p.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(p.MemoryMiB<<20, resource.BinarySI),
	}
	annotations := map[string]string{}
	limits := v1.ResourceList{}
	switch {
	case p.GPUs == 1 && p.GPUMilli < podgpu.MilliGPU:
		annotations[tesserav1alpha1.AnnotationGPUMilli] = strconv.FormatInt(p.GPUMilli, 10)
	case p.GPUs > 0:
		requests[podgpu.ResourceGPU] = *resource.NewQuantity(int64(p.GPUs), resource.DecimalSI)
		limits[podgpu.ResourceGPU] = requests[podgpu.ResourceGPU]
	}
	if len(p.Models) > 0 && p.GPUs > 0 {
		annotations[tesserav1alpha1.AnnotationGPUModels] = strings.Join(p.Models, ",")
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: p.Name + "-" + uid, UID: types.UID(uid), Annotations: annotations},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "main", Image: "trace",
			Resources: v1.ResourceRequirements{Requests: requests, Limits: limits}}}},
	}
}
