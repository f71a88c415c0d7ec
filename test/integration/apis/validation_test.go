// Package apis_test checks that the apiserver rejects invalid TrainingJob
// and ServingGroup specs with messages that name the field, from the
// generated CRD schemas and their CEL rules.
package apis_test

import (
	"os"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

func trainingJob(edit func(*tesserav1alpha1.TrainingJobSpec)) *tesserav1alpha1.TrainingJob {
	j := &tesserav1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "llama-pretrain"},
		Spec: tesserav1alpha1.TrainingJobSpec{
			QueueName: "team-a", Image: "nvcr.io/nvidia/pytorch:25.01-py3", Command: []string{"python", "train.py"},
			Nodes: tesserav1alpha1.NodeRange{Min: 4}, GPUsPerNode: 8,
		},
	}
	edit(&j.Spec)
	return j
}

func servingGroup(edit func(*tesserav1alpha1.ServingGroupSpec)) *tesserav1alpha1.ServingGroup {
	g := &tesserav1alpha1.ServingGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "llama-70b"},
		Spec: tesserav1alpha1.ServingGroupSpec{
			QueueName: "team-a", Model: "meta-llama/Llama-3.1-70B-Instruct", TensorParallelSize: 8, Replicas: 2,
		},
	}
	edit(&g.Spec)
	return g
}

func TestInvalidSpecsAreRejectedNamingTheField(t *testing.T) {
	tests := []struct {
		name string
		obj  ctrlclient.Object
		want string // "" for accepted
	}{
		{"valid training job", trainingJob(func(*tesserav1alpha1.TrainingJobSpec) {}), ""},
		{"elastic training job", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.Nodes.Max = ptr.To[int32](8) }), ""},
		{"no nodes", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.Nodes.Min = 0 }), "spec.nodes.min: Invalid value: 0: spec.nodes.min in body should be greater than or equal to 1"},
		{"max below min", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.Nodes.Max = ptr.To[int32](2) }), "spec.nodes.max: Invalid value: max must be at least min"},
		{"no queue", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.QueueName = "" }), "spec.queueName: Invalid value: \"\": spec.queueName in body should be at least 1 chars long"},
		{"too many GPUs per node", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.GPUsPerNode = 100 }), "spec.gpusPerNode: Invalid value: 100: spec.gpusPerNode in body should be less than or equal to 64"},
		{"negative backoff", trainingJob(func(s *tesserav1alpha1.TrainingJobSpec) { s.BackoffLimit = ptr.To[int32](-1) }), "spec.backoffLimit: Invalid value: -1"},
		{"valid serving group", servingGroup(func(*tesserav1alpha1.ServingGroupSpec) {}), ""},
		{"two-node TP=16 replica", servingGroup(func(s *tesserav1alpha1.ServingGroupSpec) { s.TensorParallelSize = 16 }), ""},
		{"replica of 12 GPUs on 8-GPU nodes", servingGroup(func(s *tesserav1alpha1.ServingGroupSpec) { s.TensorParallelSize = 12 }),
			"spec.tensorParallelSize: Invalid value: a replica's GPUs (tensorParallelSize × pipelineParallelSize) must fit one node or fill whole nodes"},
		{"negative replicas", servingGroup(func(s *tesserav1alpha1.ServingGroupSpec) { s.Replicas = -1 }), "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"},
		{"no model", servingGroup(func(s *tesserav1alpha1.ServingGroupSpec) { s.Model = "" }), "spec.model: Invalid value: \"\": spec.model in body should be at least 1 chars long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := env.CR.Create(t.Context(), tc.obj, ctrlclient.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v\nwant one containing %q", err, tc.want)
			}
		})
	}
}

func TestServingGroupDefaultsAndScale(t *testing.T) {
	g := servingGroup(func(*tesserav1alpha1.ServingGroupSpec) {})
	if err := env.CR.Create(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.CR.Delete(t.Context(), g) })
	if g.Spec.PipelineParallelSize != 1 || g.Spec.GPUsPerNode != 8 || g.Spec.Port != 8000 || g.Spec.Image != "vllm/vllm-openai:v0.11.0" {
		t.Errorf("defaults not applied: %+v", g.Spec)
	}
	scale := &autoscalingv1.Scale{}
	if err := env.CR.SubResource("scale").Get(t.Context(), g, scale); err != nil {
		t.Fatalf("reading the scale subresource: %v", err)
	}
	if scale.Spec.Replicas != 2 {
		t.Errorf("scale replicas = %d, want 2", scale.Spec.Replicas)
	}
	scale.Spec.Replicas = 3
	if err := env.CR.SubResource("scale").Update(t.Context(), g, ctrlclient.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scaling to 3: %v", err)
	}
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKeyFromObject(g), g); err != nil {
		t.Fatal(err)
	}
	if g.Spec.Replicas != 3 {
		t.Errorf("spec.replicas = %d after scaling to 3", g.Spec.Replicas)
	}
}
