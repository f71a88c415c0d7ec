package nodeagent_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
	"tessera.dev/tessera/test/integration/framework"
)

// runAgent runs one process's worth of node agent for node over gpus, as
// the agent's node-bound service account, until stop is called: a restart is
// stop, then runAgent again over a fresh fake.
func runAgent(t *testing.T, node *corev1.Node, gpus *nvmlfake.Server) (stop func()) {
	t.Helper()
	cfg := env.NodeAgentConfig(t, node)
	ctx, cancel := context.WithCancel(context.Background())
	client, err := nodeagent.NewClient(ctx, cfg, node.Name)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	recordEvents := framework.RecordAgentEvents(t, cfg, node.Name)
	src, err := nvmlsource.New(gpus)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	agentConfig := nodeagent.Config{
		NodeName: node.Name, Source: src, Client: client, Interval: 100 * time.Millisecond, Heartbeat: time.Hour,
		XIDRetryMax: 2 * time.Second,
	}
	recordEvents(&agentConfig)
	agent, err := nodeagent.New(agentConfig)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = agent.Run(ctx)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		<-done
		_ = src.Close()
	})
	t.Cleanup(stop)
	return stop
}

func nodeCondition(ctx context.Context, name, condition string) (corev1.NodeCondition, error) {
	node := &corev1.Node{}
	if err := env.CR.Get(ctx, types.NamespacedName{Name: name}, node); err != nil {
		return corev1.NodeCondition{}, err
	}
	for _, c := range node.Status.Conditions {
		if string(c.Type) == condition {
			return c, nil
		}
	}
	return corev1.NodeCondition{}, nil
}

func device(st tesserav1alpha1.GPUNodeTopologyStatus, uuid string) (tesserav1alpha1.GPUDevice, bool) {
	for _, d := range st.Devices {
		if d.UUID == uuid {
			return d, true
		}
	}
	return tesserav1alpha1.GPUDevice{}, false
}

// TestFaultsSurviveAnAgentRestart restarts a node's agent, as a DaemonSet
// rollout does, after a critical XID and with a GPU gone from NVML: the XID
// fault stays until an admin clears it, and the vanished GPU is reported
// unhealthy rather than left out. XID watching that fails is retried and
// shown on the Node meanwhile.
func TestFaultsSurviveAnAgentRestart(t *testing.T) {
	manifests := filepath.Join(env.RepoRoot, "manifests", "node-agent")
	if err := cluster.CreateFromFiles(t.Context(), env.CR,
		filepath.Join(manifests, "rbac.yaml"),
		filepath.Join(manifests, "validating-admission-policy.yaml")); err != nil {
		t.Fatal(err)
	}
	node := env.GPUNode(t, "restart-a", "dgx-h100", "rack-a")
	t.Cleanup(func() {
		_ = env.CR.Delete(context.Background(), &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node.Name}})
	})
	gpus, err := nvmlfake.New("dgx-h100", node.Name)
	if err != nil {
		t.Fatal(err)
	}
	uuid := func(i int) string { return gpus.Devices[i].(*server.Device).UUID }
	stop := runAgent(t, node, gpus)

	gpus.InjectXID(6, 79)
	framework.Eventually(t, framework.DefaultTimeout, "GPU 6 to be published unhealthy from XID 79", func(ctx context.Context) (bool, error) {
		obj, err := topologyOf(ctx, node.Name)
		if err != nil {
			return false, nil
		}
		d, _ := device(obj.Status, uuid(6))
		return !d.Healthy && d.FaultKind == tesserav1alpha1.GPUFaultXID, nil
	})
	stop()

	// The new agent starts on a node where NVML reports nothing wrong with
	// GPU 6 (an XID is an event, not a state) and no longer enumerates GPU 3.
	restarted, err := nvmlfake.New("dgx-h100", node.Name)
	if err != nil {
		t.Fatal(err)
	}
	restarted.HideGPU(3, true)
	runAgent(t, node, restarted)
	var st tesserav1alpha1.GPUNodeTopologyStatus
	framework.Eventually(t, framework.DefaultTimeout, "the restarted agent to publish (GPU 4 now at index 3)", func(ctx context.Context) (bool, error) {
		obj, err := topologyOf(ctx, node.Name)
		if err != nil {
			return false, err
		}
		st = obj.Status
		d, _ := device(st, uuid(4))
		return d.Index == 3, nil
	})
	if d, _ := device(st, uuid(6)); d.Healthy || d.Fault != "critical XID 79" || d.FaultKind != tesserav1alpha1.GPUFaultXID {
		t.Errorf("GPU 6 after the restart = %+v, want still unhealthy from XID 79", d)
	}
	if d, ok := device(st, uuid(3)); !ok || d.Healthy || d.FaultKind != tesserav1alpha1.GPUFaultLost {
		t.Errorf("GPU 3 after the restart = %+v (listed %v), want listed unhealthy, lost", d, ok)
	}
	if st.GPUCount != 8 || st.HealthyGPUs != 6 || len(st.Allocatable) != 6 {
		t.Errorf("after the restart: %d GPUs, %d healthy, allocatable %v; want 8, 6, six GPUs", st.GPUCount, st.HealthyGPUs, st.Allocatable)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the Node condition to name both faults", func(ctx context.Context) (bool, error) {
		c, err := nodeCondition(ctx, node.Name, tesserav1alpha1.NodeConditionGPUHealthy)
		return c.Status == corev1.ConditionFalse && strings.HasPrefix(c.Message, "2 of 8 GPUs unhealthy") &&
			strings.Contains(c.Message, "critical XID 79") && strings.Contains(c.Message, "lost"), err
	})

	// An admin clears GPU 6 (after a reset, say): it returns to service.
	obj, err := topologyOf(t.Context(), node.Name)
	if err != nil {
		t.Fatal(err)
	}
	patch := ctrlclient.MergeFrom(obj.DeepCopy())
	obj.Annotations = map[string]string{tesserav1alpha1.AnnotationClearFaults: uuid(6)}
	if err := env.CR.Patch(t.Context(), obj, patch); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "GPU 6 healthy once the admin cleared it", func(ctx context.Context) (bool, error) {
		obj, err := topologyOf(ctx, node.Name)
		if err != nil {
			return false, err
		}
		d, _ := device(obj.Status, uuid(6))
		_, annotated := obj.Annotations[tesserav1alpha1.AnnotationClearFaults]
		return d.Healthy && !annotated && obj.Status.HealthyGPUs == 7, nil
	})

	// XID watching breaks, and is retried until it works again.
	restarted.BreakXIDEvents(true)
	framework.Eventually(t, framework.DefaultTimeout, "the XID watch Node condition to turn False", func(ctx context.Context) (bool, error) {
		c, err := nodeCondition(ctx, node.Name, tesserav1alpha1.NodeConditionXIDWatch)
		return c.Status == corev1.ConditionFalse && c.Reason == "XIDWatchFailed", err
	})
	restarted.BreakXIDEvents(false)
	framework.Eventually(t, framework.DefaultTimeout, "the XID watch Node condition to turn True again", func(ctx context.Context) (bool, error) {
		c, err := nodeCondition(ctx, node.Name, tesserav1alpha1.NodeConditionXIDWatch)
		return c.Status == corev1.ConditionTrue, err
	})
	restarted.InjectXID(1, 48)
	framework.Eventually(t, framework.DefaultTimeout, "an XID after the watch recovered to fault GPU 1", func(ctx context.Context) (bool, error) {
		obj, err := topologyOf(ctx, node.Name)
		if err != nil {
			return false, err
		}
		d, _ := device(obj.Status, uuid(1))
		return !d.Healthy && d.Fault == "critical XID 48", nil
	})
}
