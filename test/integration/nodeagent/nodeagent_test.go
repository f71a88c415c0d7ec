// Package nodeagent_test runs node agents in fake-NVML mode against a real
// apiserver, with the RBAC and ValidatingAdmissionPolicy from manifests/.
package nodeagent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

// kubeletStandIn answers for the kubelet's PodResources API, which kwok
// nodes do not serve.
type kubeletStandIn struct {
	mu   sync.Mutex
	held []nodeagent.ContainerGPUs
}

func (k *kubeletStandIn) ListGPUs(context.Context) ([]nodeagent.ContainerGPUs, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held, nil
}

func (k *kubeletStandIn) set(held []nodeagent.ContainerGPUs) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.held = held
}

// startAgent runs a node agent for node over fake NVML of the given shape,
// as the agent's own node-bound service account, recording real events.
func startAgent(t *testing.T, node *corev1.Node, shape string, kubelet nodeagent.PodResourcesLister) *nvmlfake.Server {
	t.Helper()
	cfg := env.NodeAgentConfig(t, node)
	recordEvents := framework.RecordAgentEvents(t, cfg, node.Name)
	return framework.RunNodeAgent(t, cfg, node.Name, shape, func(c *nodeagent.Config) {
		recordEvents(c)
		// Far longer than the test: every write it sees comes from a change.
		c.Heartbeat = time.Hour
		c.PodResources = kubelet
	})
}

func topologyOf(ctx context.Context, name string) (*tesserav1alpha1.GPUNodeTopology, error) {
	obj := &tesserav1alpha1.GPUNodeTopology{}
	return obj, env.CR.Get(ctx, types.NamespacedName{Name: name}, obj)
}

func TestNodeAgents(t *testing.T) {
	manifests := filepath.Join(env.RepoRoot, "manifests", "node-agent")
	if err := cluster.CreateFromFiles(t.Context(), env.CR,
		filepath.Join(manifests, "rbac.yaml"),
		filepath.Join(manifests, "validating-admission-policy.yaml")); err != nil {
		t.Fatal(err)
	}
	nodeA := env.GPUNode(t, "agent-a", "dgx-h100", "rack-a")
	nodeB := env.GPUNode(t, "agent-b", "l40s-pcie", "rack-a")
	// No garbage collector runs here to follow the owner references.
	t.Cleanup(func() {
		for _, name := range []string{"agent-a", "agent-b"} {
			_ = env.CR.Delete(context.Background(), &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: name}})
		}
	})

	// The policy is enforced once the apiserver has loaded it; probe with a
	// dry run, which admission sees but storage does not.
	probe, err := ctrlclient.New(env.NodeAgentConfig(t, nodeA), ctrlclient.Options{Scheme: env.CR.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the admission policy to deny agent-a writing agent-b's object", func(ctx context.Context) (bool, error) {
		err := probe.Create(ctx, &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: "agent-b"}}, ctrlclient.DryRunAll)
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), nil
	})

	kubeletA := &kubeletStandIn{}
	gpusA := startAgent(t, nodeA, "dgx-h100", kubeletA)
	startAgent(t, nodeB, "l40s-pcie", nil)

	t.Run("each agent publishes its own node", func(t *testing.T) {
		var a, b *tesserav1alpha1.GPUNodeTopology
		framework.Eventually(t, framework.DefaultTimeout, "both GPUNodeTopology objects", func(ctx context.Context) (bool, error) {
			var errA, errB error
			a, errA = topologyOf(ctx, "agent-a")
			b, errB = topologyOf(ctx, "agent-b")
			return errA == nil && errB == nil && a.Status.GPUCount > 0 && b.Status.GPUCount > 0, nil
		})
		if a.Status.Model != "NVIDIA H100 80GB HBM3" || a.Status.HealthyGPUs != 8 || len(a.Status.Islands) != 1 || a.Status.Islands[0].Kind != "NVSwitch" {
			t.Errorf("agent-a status = model %q, %d healthy, islands %+v", a.Status.Model, a.Status.HealthyGPUs, a.Status.Islands)
		}
		if b.Status.Model != "NVIDIA L40S" || len(b.Status.Islands) != 8 || b.Status.Links[0].Type != "PIX" {
			t.Errorf("agent-b status = model %q, islands %+v, link 0-1 %+v", b.Status.Model, b.Status.Islands, b.Status.Links[0])
		}
		if len(a.OwnerReferences) != 1 || a.OwnerReferences[0].UID != nodeA.UID {
			t.Errorf("agent-a owner references %+v, want node agent-a", a.OwnerReferences)
		}
	})

	t.Run("an agent cannot write another node's objects", func(t *testing.T) {
		b, err := topologyOf(t.Context(), "agent-b")
		if err != nil {
			t.Fatal(err)
		}
		b.Status.HealthyGPUs = 0
		err = probe.Status().Update(t.Context(), b)
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Fatalf("agent-a updating agent-b's status: err = %v, want denied by the policy", err)
		}
		if !strings.Contains(err.Error(), "on node agent-a may not write") {
			t.Errorf("denial %q does not say which node may write what", err)
		}
		t.Logf("denied as expected: %v", err)
		node := &corev1.Node{}
		if err := env.CR.Get(t.Context(), types.NamespacedName{Name: "agent-b"}, node); err != nil {
			t.Fatal(err)
		}
		patch := ctrlclient.MergeFrom(node.DeepCopy())
		node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: tesserav1alpha1.NodeConditionGPUHealthy, Status: corev1.ConditionFalse, Reason: "Forged"})
		if err := probe.Status().Patch(t.Context(), node, patch); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("agent-a patching node agent-b's status: err = %v, want denied", err)
		}
	})

	t.Run("a container holding other GPUs than assigned is reported on its pod", func(t *testing.T) {
		ns := env.Namespace(t)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drifted", Annotations: map[string]string{tesserav1alpha1.AnnotationGPUIDs: "0,1"}},
			Spec:       corev1.PodSpec{NodeName: "agent-a", Containers: []corev1.Container{{Name: "train", Image: "trainer"}}},
		}
		if err := env.CR.Create(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		a, err := topologyOf(t.Context(), "agent-a")
		if err != nil {
			t.Fatal(err)
		}
		kubeletA.set([]nodeagent.ContainerGPUs{{Namespace: ns, Pod: "drifted", Container: "train",
			DeviceIDs: []string{a.Status.Devices[4].UUID, a.Status.Devices[5].UUID}}})
		framework.Eventually(t, framework.DefaultTimeout, "a GPUAssignmentDrift event on the pod", func(ctx context.Context) (bool, error) {
			events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=GPUAssignmentDrift"})
			if err != nil || len(events.Items) == 0 {
				return false, err
			}
			e := events.Items[0]
			return e.InvolvedObject.Name == "drifted" && strings.Contains(e.Message, "assigned GPUs 0,1 but the containers hold GPUs 4,5"), nil
		})
	})

	t.Run("an injected fault is published without waiting for a heartbeat", func(t *testing.T) {
		gpusA.InjectECCErrors(2, 1)
		framework.Eventually(t, framework.DefaultTimeout, "GPU 2 of agent-a to be published unhealthy", func(ctx context.Context) (bool, error) {
			a, err := topologyOf(ctx, "agent-a")
			if err != nil {
				return false, err
			}
			return !a.Status.Devices[2].Healthy && a.Status.HealthyGPUs == 7, nil
		})
		framework.Eventually(t, framework.DefaultTimeout, "node agent-a's TesseraGPUHealthy condition to turn False", func(ctx context.Context) (bool, error) {
			node := &corev1.Node{}
			if err := env.CR.Get(ctx, types.NamespacedName{Name: "agent-a"}, node); err != nil {
				return false, err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == tesserav1alpha1.NodeConditionGPUHealthy {
					return c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "GPU 2"), nil
				}
			}
			return false, nil
		})
	})
}
