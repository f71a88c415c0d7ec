package gpunodes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestShapeNode(t *testing.T) {
	for _, name := range ShapeNames() {
		t.Run(name, func(t *testing.T) {
			shape, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			node := shape.Node("n1", "rack-a")
			gpus := node.Status.Allocatable[ResourceGPU]
			if gpus.Value() != int64(shape.GPUs) {
				t.Errorf("allocatable %s = %s, want %d", ResourceGPU, gpus.String(), shape.GPUs)
			}
			if diff := cmp.Diff(node.Status.Capacity, node.Status.Allocatable); diff != "" {
				t.Errorf("capacity and allocatable differ (-capacity +allocatable):\n%s", diff)
			}
			wantLabels := map[string]string{LabelShape: name, LabelRack: "rack-a", LabelGPUProduct: shape.GPUProduct}
			for k, want := range wantLabels {
				if got := node.Labels[k]; got != want {
					t.Errorf("label %s = %q, want %q", k, got, want)
				}
			}
			if _, err := resource.ParseQuantity(node.Labels[LabelGPUMemory] + "Mi"); err != nil {
				t.Errorf("label %s is not a MiB count: %v", LabelGPUMemory, err)
			}
		})
	}
}

func TestLookupUnknownShapeNamesKnownOnes(t *testing.T) {
	_, err := Lookup("dgx-b300")
	if err == nil || !strings.Contains(err.Error(), "dgx-h100") {
		t.Fatalf("Lookup(dgx-b300) error = %v, want one listing the known shapes", err)
	}
}

func TestNodeWithoutRackHasNoRackLabel(t *testing.T) {
	node := Shapes["l4-pcie"].Node("n1", "")
	if _, ok := node.Labels[LabelRack]; ok {
		t.Errorf("node has label %s without a rack", LabelRack)
	}
}
