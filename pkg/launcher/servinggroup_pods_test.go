package launcher

import (
	"reflect"
	"testing"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// Every spec field but replicas changes a replica's hash, so a change to
// any of them rolls the replicas; a field added to the spec must be added
// here (the test counts them), and so decided on.
func TestReplicaHashCoversEverySpecField(t *testing.T) {
	base := tesserav1alpha1.ServingGroup{
		ObjectMeta: objectMeta("ns", "llama"),
		Spec: tesserav1alpha1.ServingGroupSpec{
			QueueName: "team", Model: "meta-llama/Llama-3.1-8B-Instruct", Image: "vllm/vllm-openai:v0.11.0",
			Args: []string{"--max-model-len=8192"}, TensorParallelSize: 2, PipelineParallelSize: 1, GPUsPerNode: 8,
			Replicas: 2, Port: 8000, NodeSelector: map[string]string{"nvidia.com/gpu.product": "H100"}, PriorityClassName: "serving",
		},
	}
	changes := map[string]func(*tesserav1alpha1.ServingGroupSpec){
		"QueueName":            func(s *tesserav1alpha1.ServingGroupSpec) { s.QueueName = "other" },
		"Model":                func(s *tesserav1alpha1.ServingGroupSpec) { s.Model = "Qwen/Qwen3-8B" },
		"Image":                func(s *tesserav1alpha1.ServingGroupSpec) { s.Image = "vllm/vllm-openai:v0.11.1" },
		"Args":                 func(s *tesserav1alpha1.ServingGroupSpec) { s.Args = []string{"--max-model-len=4096"} },
		"TensorParallelSize":   func(s *tesserav1alpha1.ServingGroupSpec) { s.TensorParallelSize = 4 },
		"PipelineParallelSize": func(s *tesserav1alpha1.ServingGroupSpec) { s.PipelineParallelSize = 2 },
		"GPUsPerNode":          func(s *tesserav1alpha1.ServingGroupSpec) { s.GPUsPerNode = 1 },
		"Port":                 func(s *tesserav1alpha1.ServingGroupSpec) { s.Port = 9000 },
		"NodeSelector": func(s *tesserav1alpha1.ServingGroupSpec) {
			s.NodeSelector = map[string]string{"nvidia.com/gpu.product": "H200"}
		},
		"PriorityClassName": func(s *tesserav1alpha1.ServingGroupSpec) { s.PriorityClassName = "batch" },
	}
	same := map[string]func(*tesserav1alpha1.ServingGroupSpec){
		"Replicas": func(s *tesserav1alpha1.ServingGroupSpec) { s.Replicas = 5 },
	}
	if n := reflect.TypeFor[tesserav1alpha1.ServingGroupSpec]().NumField(); n != len(changes)+len(same) {
		t.Fatalf("ServingGroupSpec has %d fields, the test covers %d: decide whether the new field rolls the replicas", n, len(changes)+len(same))
	}
	want := replicaHash(&base, 0)
	if replicaHash(&base, 0) != want {
		t.Fatal("hash not stable")
	}
	for field, change := range changes {
		sg := *base.DeepCopy()
		change(&sg.Spec)
		if replicaHash(&sg, 0) == want {
			t.Errorf("changing %s does not change the replica hash: the replicas would never roll", field)
		}
	}
	for field, change := range same {
		sg := *base.DeepCopy()
		change(&sg.Spec)
		if replicaHash(&sg, 0) != want {
			t.Errorf("changing %s changes the replica hash: it would roll replicas needlessly", field)
		}
	}
}
