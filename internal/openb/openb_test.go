package openb

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tessera.dev/tessera/pkg/fragmentation"
)

func TestReadNodes(t *testing.T) {
	f, err := os.Open("testdata/nodes.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nodes, err := ReadNodes(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{
		{Name: "n0", CPUMilli: 64000, MemoryMiB: 262144, GPUs: 2, Model: "P100"},
		{Name: "n1", CPUMilli: 96000, MemoryMiB: 786432, GPUs: 8, Model: "G2"},
		{Name: "n2", CPUMilli: 32000, MemoryMiB: 131072},
	}
	if diff := cmp.Diff(want, nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fragmentation.Node{FreeCPUMilli: 64000, FreeGPUMilli: []int64{1000, 1000}, Model: "P100"}, nodes[0].Empty()); diff != "" {
		t.Errorf("empty node (-want +got):\n%s", diff)
	}
}

func TestReadPods(t *testing.T) {
	f, err := os.Open("testdata/pods.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pods, err := ReadPods(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Pod{
		{Name: "p0", CPUMilli: 12000, MemoryMiB: 16384, GPUs: 1, GPUMilli: 1000},
		{Name: "p1", CPUMilli: 6000, MemoryMiB: 12288, GPUs: 1, GPUMilli: 460},
		{Name: "p2", CPUMilli: 8000, MemoryMiB: 30517},
		{Name: "p3", CPUMilli: 4000, MemoryMiB: 8192, GPUs: 2, GPUMilli: 1000, Models: []string{"V100M16", "V100M32"}},
	}
	if diff := cmp.Diff(want, pods); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
	if got := pods[3].GPURequestMilli(); got != 2000 {
		t.Errorf("GPU request of p3 = %d, want 2000", got)
	}
}

func TestReadErrorsNameLineAndColumn(t *testing.T) {
	tests := []struct{ csv, want string }{
		{"name,cpu_milli,memory_mib,num_gpu\np,1,1,1\n", "no gpu_milli column"},
		{"name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,x,1,1,1000\n", `line 2, column cpu_milli: "x" is not a non-negative integer`},
		{"name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,2,500\n", "line 2, column gpu_milli: a pod of several GPUs takes them whole (1000)"},
		{"name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,0,300\n", "line 2, column gpu_milli: a pod without GPUs asks for no GPU share"},
	}
	for _, tc := range tests {
		if _, err := ReadPods(strings.NewReader(tc.csv)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadPods(%q) = %v, want an error containing %q", tc.csv, err, tc.want)
		}
	}
	if _, err := ReadNodes(strings.NewReader("sn,cpu_milli,memory_mib,gpu,model\nn,1,1,2,\n")); err == nil || !strings.Contains(err.Error(), "line 2, column model") {
		t.Errorf("ReadNodes of a GPU node without a model = %v", err)
	}
}

func TestInflate(t *testing.T) {
	pods := []Pod{{Name: "a", GPUs: 1, GPUMilli: 1000}, {Name: "b", GPUs: 1, GPUMilli: 500}, {Name: "c"}}
	// 1.5 GPUs asked of a 4-GPU cluster; 130 % is 5.2 GPUs.
	got := Inflate(pods, 4000, 1.3, 42)
	var requested int64
	names := map[string]bool{}
	for _, p := range got {
		requested += p.GPURequestMilli()
		if names[p.Name] {
			t.Errorf("name %s twice", p.Name)
		}
		names[p.Name] = true
	}
	if requested < 5200 || requested >= 5200+1000 {
		t.Errorf("inflated request = %d milli-GPUs, want at least 5200 and less than one pod more", requested)
	}
	for _, name := range []string{"a", "b", "c"} {
		if !names[name] {
			t.Errorf("original pod %s missing", name)
		}
	}
	if diff := cmp.Diff(got, Inflate(pods, 4000, 1.3, 42)); diff != "" {
		t.Errorf("same seed, different arrivals:\n%s", diff)
	}
	if cmp.Equal(got, Inflate(pods, 4000, 1.3, 43)) {
		t.Error("seeds 42 and 43 gave the same arrivals")
	}
}
