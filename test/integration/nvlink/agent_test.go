package nvlink_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/test/integration/framework"
)

// agentWatch is a node agent running for one node over fake NVML, with a
// stand-in for the kubelet's PodResources API (kwok nodes serve none) and
// the agent's metrics registry.
type agentWatch struct {
	registry *prometheus.Registry
	mu       sync.Mutex
	held     []nodeagent.ContainerGPUs
}

func (a *agentWatch) ListGPUs(context.Context) ([]nodeagent.ContainerGPUs, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.held), nil
}

// hold reports container of pod as holding the GPUs with uuids, as the
// device plugin's allocation shows through PodResources.
func (a *agentWatch) hold(pod corev1.ObjectReference, container string, uuids []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = append(a.held, nodeagent.ContainerGPUs{Namespace: pod.Namespace, Pod: pod.Name, Container: container, DeviceIDs: uuids})
}

// startAgent runs the node agent for node and waits for its first
// GPUNodeTopology.
func startAgent(t *testing.T, node *corev1.Node, shape string) *agentWatch {
	t.Helper()
	watch := &agentWatch{registry: prometheus.NewRegistry()}
	framework.RunNodeAgent(t, env.Cluster.Config, node.Name, shape, func(c *nodeagent.Config) {
		c.Recorder = record.NewFakeRecorder(100)
		c.Registry = watch.registry
		c.PodResources = watch
	})
	t.Cleanup(func() {
		_ = env.CR.Delete(context.Background(), &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node.Name}})
	})
	framework.Eventually(t, framework.DefaultTimeout, "the agent's GPUNodeTopology for "+node.Name, func(ctx context.Context) (bool, error) {
		obj := &tesserav1alpha1.GPUNodeTopology{}
		err := env.CR.Get(ctx, types.NamespacedName{Name: node.Name}, obj)
		return err == nil && obj.Status.HeartbeatTime != nil, nil
	})
	return watch
}

// waitAttributed waits until the agent's metrics attribute exactly the GPUs
// ids to the pod, and then checks it counted no drift from the annotation.
func (a *agentWatch) waitAttributed(t *testing.T, ns, pod string, ids []int) {
	t.Helper()
	var drift float64
	framework.Eventually(t, framework.DefaultTimeout, "the agent to attribute GPUs to "+pod, func(context.Context) (bool, error) {
		families, err := a.registry.Gather()
		if err != nil {
			return false, err
		}
		var seen []int
		drift = 0
		for _, f := range families {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch f.GetName() {
				case "tessera_gpu_container_info":
					if labels["namespace"] == ns && labels["pod"] == pod {
						i, err := strconv.Atoi(labels["gpu"])
						if err != nil {
							return false, err
						}
						seen = append(seen, i)
					}
				case "tessera_gpu_assignment_drift_total":
					drift += m.GetCounter().GetValue()
				}
			}
		}
		slices.Sort(seen)
		return slices.Equal(seen, ids), nil
	})
	if drift != 0 {
		t.Errorf("the agent counted %v drifted assignments, want none", drift)
	}
}

func topologyOf(t *testing.T, node string) *tesserav1alpha1.GPUNodeTopology {
	t.Helper()
	obj := &tesserav1alpha1.GPUNodeTopology{}
	if err := env.CR.Get(t.Context(), types.NamespacedName{Name: node}, obj); err != nil {
		t.Fatal(err)
	}
	return obj
}
