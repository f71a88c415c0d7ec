package podgpu

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gpus(n int64) v1.ResourceRequirements {
	return v1.ResourceRequirements{Limits: v1.ResourceList{ResourceGPU: *resource.NewQuantity(n, resource.DecimalSI)}}
}

func TestWholeGPUs(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	pod := &v1.Pod{Spec: v1.PodSpec{
		InitContainers: []v1.Container{
			{Name: "warmup", Resources: gpus(3)},
			{Name: "sidecar", Resources: gpus(1), RestartPolicy: &always},
		},
		Containers: []v1.Container{{Name: "a", Resources: gpus(1)}, {Name: "b", Resources: gpus(1)}},
	}}
	// Containers 2 + the sidecar 1 run together: 3; the init container's 3
	// runs before them. The pod holds 3.
	if got := WholeGPUs(pod); got != 3 {
		t.Errorf("WholeGPUs = %d, want 3", got)
	}
	pod.Spec.InitContainers[0].Resources = gpus(4)
	if got := WholeGPUs(pod); got != 4 {
		t.Errorf("WholeGPUs with a 4-GPU init container = %d, want 4", got)
	}
}

func TestRead(t *testing.T) {
	pod := func(n int64, annotations map[string]string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: gpus(n)}}}}
	}
	tests := []struct {
		name    string
		pod     *v1.Pod
		want    Request
		wantErr string
	}{
		{name: "no GPU", pod: pod(0, nil), want: Request{Milli: MilliGPU}},
		{name: "whole GPUs", pod: pod(4, nil), want: Request{GPUs: 4, Milli: MilliGPU}},
		{name: "share", pod: pod(0, map[string]string{"tessera.dev/gpu-milli": "300"}), want: Request{GPUs: 1, Milli: 300}},
		{name: "share on a time-sliced replica", pod: pod(1, map[string]string{"tessera.dev/gpu-milli": "500"}), want: Request{GPUs: 1, Milli: 500}},
		{name: "models", pod: pod(1, map[string]string{"tessera.dev/gpu-models": "T4, G2,T4"}), want: Request{GPUs: 1, Milli: MilliGPU, Models: []string{"G2", "T4"}}},
		{name: "share of two GPUs", pod: pod(2, map[string]string{"tessera.dev/gpu-milli": "300"}),
			wantErr: `tessera.dev/gpu-milli="300": a share is of one GPU, but the pod asks for 2 nvidia.com/gpu`},
		{name: "whole GPU as a share", pod: pod(0, map[string]string{"tessera.dev/gpu-milli": "1000"}),
			wantErr: `tessera.dev/gpu-milli="1000": want a share of one GPU from 1 to 999 milli-GPUs`},
		{name: "not a number", pod: pod(0, map[string]string{"tessera.dev/gpu-milli": "half"}), wantErr: `tessera.dev/gpu-milli="half"`},
		{name: "no model", pod: pod(1, map[string]string{"tessera.dev/gpu-models": " , "}), wantErr: `tessera.dev/gpu-models=" , ": names no GPU model`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
	// A malformed share on a placed pod counts as a whole GPU.
	if got := Held(pod(0, map[string]string{"tessera.dev/gpu-milli": "half"})); got.GPUs != 1 || got.Milli != MilliGPU {
		t.Errorf("Held(malformed share) = %+v, want one whole GPU", got)
	}
}
