package framework

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
)

// PublishTopology writes the GPUNodeTopology a node agent on a fake-NVML
// server of shape would publish for node (the agent's own discovery and
// status code, without its loop), and deletes it when the test ends.
func (e *Env) PublishTopology(t testing.TB, node, shape string) *tesserav1alpha1.GPUNodeTopology {
	t.Helper()
	status, err := gpunodes.TopologyStatus(node, shape)
	if err != nil {
		t.Fatal(err)
	}
	obj := &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := e.CR.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating GPUNodeTopology %s: %v", node, err)
	}
	t.Cleanup(func() {
		if err := e.CR.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting GPUNodeTopology %s: %v", node, err)
		}
	})
	obj.Status = status
	obj.Status.HeartbeatTime = &metav1.Time{Time: metav1.Now().Time}
	if err := e.CR.Status().Update(t.Context(), obj); err != nil {
		t.Fatalf("publishing GPUNodeTopology %s: %v", node, err)
	}
	return obj
}
