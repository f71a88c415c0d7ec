package framework

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
)

// PublishTopology writes the GPUNodeTopology a node agent on a fake-NVML
// server of shape would publish for node (the agent's own discovery and
// status code, without its loop), and deletes it when the test ends.
func (e *Env) PublishTopology(t testing.TB, node, shape string) *tesserav1alpha1.GPUNodeTopology {
	t.Helper()
	obj, err := gpunodes.PublishTopology(t.Context(), e.CR, node, shape, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.CR.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting GPUNodeTopology %s: %v", node, err)
		}
	})
	return obj
}
