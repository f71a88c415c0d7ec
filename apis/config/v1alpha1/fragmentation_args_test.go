package v1alpha1

import (
	"testing"

	"k8s.io/utils/ptr"
)

func TestDecodeGPUFragmentationArgs(t *testing.T) {
	runDecodeCases(t, DecodeGPUFragmentationArgs, []decodeCase[GPUFragmentationArgs]{
		{name: "defaults", raw: ``, want: &GPUFragmentationArgs{Measure: MeasureBoth,
			HalfLifePods: ptr.To[int32](2000), CoveragePercent: ptr.To[int32](100), MaxShapes: ptr.To[int32](128), GPUCountExponent: ptr.To[int32](2)}},
		{name: "pinned", raw: `{"measure": "FGD", "workload": [{"cpuMilli": 4000, "gpus": 1, "gpuMilli": 250, "models": ["T4"], "weight": 3}]}`,
			want: &GPUFragmentationArgs{Measure: MeasureFGD, Workload: []WorkloadShape{{CPUMilli: 4000, GPUs: 1, GPUMilli: 250, Models: []string{"T4"}, Weight: 3}},
				HalfLifePods: ptr.To[int32](2000), CoveragePercent: ptr.To[int32](100), MaxShapes: ptr.To[int32](128), GPUCountExponent: ptr.To[int32](2)}},
		{name: "bad measure", raw: `{"measure": "BestFit"}`, wantErr: `args.measure: Unsupported value: "BestFit": supported values: "Both", "Copies", "FGD"`},
		{name: "share of two GPUs", raw: `{"workload": [{"cpuMilli": 1, "gpus": 2, "gpuMilli": 500, "weight": 1}]}`,
			wantErr: "args.workload[0].gpuMilli: Invalid value: 500: a share is 1 to 999 milli-GPUs of one GPU (gpus: 1)"},
		{name: "no weight", raw: `{"workload": [{"cpuMilli": 1, "gpus": 1}]}`, wantErr: "args.workload[0].weight: Invalid value: 0: must be between 1 and 1000000"},
		{name: "exponent", raw: `{"gpuCountExponent": 5}`, wantErr: "args.gpuCountExponent: Invalid value: 5: must be between 0 and 4"},
		{name: "coverage", raw: `{"coveragePercent": 0}`, wantErr: "args.coveragePercent: Invalid value: 0: must be between 1 and 100"},
		{name: "unknown field", raw: `{"halfLife": 5}`, wantErr: `unknown field "halfLife"`},
	})
}
