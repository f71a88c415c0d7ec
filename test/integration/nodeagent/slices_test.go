package nodeagent_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/test/integration/framework"
)

// slicesOf lists the ResourceSlices of Tessera's driver on node.
func slicesOf(ctx context.Context, node string) ([]resourceapi.ResourceSlice, error) {
	list, err := env.Client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: resourceapi.ResourceSliceSelectorNodeName + "=" + node + "," + resourceapi.ResourceSliceSelectorDriver + "=" + dra.DriverName,
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// The agent publishes its node's GPUs as a ResourceSlice of driver
// gpu.tessera.dev, as the chart's ServiceAccount with a node-bound token:
// every GPU with the attributes and the share capacity the apiserver keeps
// (no field dropped for a missing feature), owned by the Node, a fault as a
// device taint; the admission policy refuses a slice for another node or of
// another driver.
func TestAgentPublishesItsGPUsAsResourceSlices(t *testing.T) {
	// The chart's node-agent RBAC and policy with dra.enabled: a superset
	// of the default render the other tests use.
	rendered := env.RenderChart(t, []string{"templates/node-agent/rbac.yaml", "templates/node-agent/validating-admission-policy.yaml"}, "dra.enabled=true")
	if err := cluster.ApplyFromFiles(t.Context(), env.CR, rendered); err != nil {
		t.Fatal(err)
	}
	nodeA := env.GPUNode(t, "slices-a", "dgx-h100", "rack-s")
	env.GPUNode(t, "slices-b", "dgx-h100", "rack-s")
	cfg := env.NodeAgentConfig(t, nodeA)
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var publishErrors []string
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	publisher := dra.NewPublisher(ctx, clientset, nodeA.Name, func(_ context.Context, err error, msg string) {
		mu.Lock()
		defer mu.Unlock()
		publishErrors = append(publishErrors, fmt.Sprintf("%s: %v", msg, err))
	})
	t.Cleanup(publisher.Stop)
	recordEvents := framework.RecordAgentEvents(t, cfg, nodeA.Name)
	gpus := framework.RunNodeAgent(t, cfg, nodeA.Name, "dgx-h100", func(c *nodeagent.Config) {
		recordEvents(c)
		c.Slices = publisher
	})

	// No garbage collector runs here to follow the owner references.
	t.Cleanup(func() {
		_ = env.CR.Delete(context.Background(), &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: nodeA.Name}})
	})

	var slice resourceapi.ResourceSlice
	var topo *tesserav1alpha1.GPUNodeTopology
	framework.Eventually(t, framework.DefaultTimeout, "the agent's GPUNodeTopology and ResourceSlice with 8 GPUs", func(ctx context.Context) (bool, error) {
		var err error
		if topo, err = topologyOf(ctx, nodeA.Name); err != nil {
			return false, err
		}
		slices, err := slicesOf(ctx, nodeA.Name)
		if err != nil || len(slices) != 1 {
			return false, err
		}
		slice = slices[0]
		return len(slice.Spec.Devices) == 8 && len(topo.Status.Devices) == 8, nil
	})
	for i, d := range slice.Spec.Devices {
		want := topo.Status.Devices[i]
		if d.Name != dra.DeviceName(want.Index) || ptr.Deref(d.Attributes[dra.AttrUUID].StringValue, "") != want.UUID {
			t.Errorf("device %d is %s with uuid %v, want %s with %s (the GPUNodeTopology's)", i, d.Name, d.Attributes[dra.AttrUUID].StringValue, dra.DeviceName(want.Index), want.UUID)
		}
		milli, ok := d.Capacity[dra.CapacityMilli]
		if !ok || milli.RequestPolicy == nil || !ptr.Deref(d.AllowMultipleAllocations, false) {
			t.Errorf("%s: the apiserver kept milli %+v, allowMultipleAllocations %v: DRAConsumableCapacity off?", d.Name, milli, d.AllowMultipleAllocations)
		}
	}
	if owners := slice.OwnerReferences; len(owners) != 1 || owners[0].Kind != "Node" || owners[0].UID != nodeA.UID {
		t.Errorf("slice owners %+v, want node %s", owners, nodeA.Name)
	}

	gpus.InjectECCErrors(2, 1)
	framework.Eventually(t, framework.DefaultTimeout, "gpu-2 tainted after its ECC fault", func(ctx context.Context) (bool, error) {
		slices, err := slicesOf(ctx, nodeA.Name)
		if err != nil || len(slices) != 1 {
			return false, err
		}
		for _, d := range slices[0].Spec.Devices {
			if tainted := len(d.Taints) > 0; tainted != (d.Name == "gpu-2") {
				return false, fmt.Errorf("%s tainted %v", d.Name, d.Taints)
			}
		}
		return true, nil
	})

	probe, err := ctrlclient.New(cfg, ctrlclient.Options{Scheme: env.CR.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	forged := func(node, pool, driver string) *resourceapi.ResourceSlice {
		return &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{GenerateName: node + "-forged-"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: driver, NodeName: ptr.To(node),
				Pool: resourceapi.ResourcePool{Name: pool, ResourceSliceCount: 1},
			},
		}
	}
	for _, c := range []struct{ node, pool, driver string }{
		{"slices-b", "slices-b", dra.DriverName},
		{nodeA.Name, nodeA.Name, "gpu.nvidia.com"},
		{nodeA.Name, "slices-b", dra.DriverName},
	} {
		err := probe.Create(t.Context(), forged(c.node, c.pool, c.driver), ctrlclient.DryRunAll)
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("agent of %s creating a slice of driver %s in pool %s on %s: err = %v, want denied by the policy", nodeA.Name, c.driver, c.pool, c.node, err)
		} else if !strings.Contains(err.Error(), "may write only ResourceSlices of driver gpu.tessera.dev on that node in its pool") {
			t.Errorf("denial %q does not say what the agent may write", err)
		}
	}
	if err := probe.Create(t.Context(), forged(nodeA.Name, nodeA.Name, dra.DriverName), ctrlclient.DryRunAll); err != nil {
		t.Errorf("agent of %s creating a slice of its own: %v", nodeA.Name, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range publishErrors {
		if strings.Contains(e, "dropped") || strings.Contains(e, "Dropped") {
			t.Errorf("the apiserver dropped fields of the slice: %s", e)
		}
	}
}
