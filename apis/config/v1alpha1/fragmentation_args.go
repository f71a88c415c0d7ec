package v1alpha1

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// FragmentationMeasure is how the plugin counts the GPU capacity a pod
// shape cannot use on a node.
type FragmentationMeasure string

const (
	// MeasureBoth is the mean of MeasureFGD and MeasureCopies.
	MeasureBoth FragmentationMeasure = "Both"
	// MeasureCopies counts the free GPU capacity left over once as many
	// copies of the shape as the node's CPU and GPUs allow are placed.
	MeasureCopies FragmentationMeasure = "Copies"
	// MeasureFGD is FGD's fragment, as published: the free GPU capacity
	// the shape cannot use when one copy is placed.
	MeasureFGD FragmentationMeasure = "FGD"
)

// WorkloadShape is one pod shape of an expected workload mix.
type WorkloadShape struct {
	// CPUMilli is the pod's CPU request in millicores.
	CPUMilli int64 `json:"cpuMilli"`
	// GPUs is the number of whole GPUs, or 1 for a share of one GPU.
	// +optional
	GPUs int32 `json:"gpus,omitempty"`
	// GPUMilli is the share of one GPU in milli-GPUs (1 to 999); unset
	// means whole GPUs.
	// +optional
	GPUMilli int32 `json:"gpuMilli,omitempty"`
	// Models are the GPU models the shape may use; empty means any.
	// +optional
	Models []string `json:"models,omitempty"`
	// Weight is the shape's relative frequency (1 to 1000000).
	Weight int32 `json:"weight"`
}

// GPUFragmentationArgs configures the GPUFragmentation plugin.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type GPUFragmentationArgs struct {
	metav1.TypeMeta `json:",inline"`

	// Measure is how a node's fragmentation for a pod shape is counted:
	// "Both" (default), "Copies" or "FGD".
	// +optional
	Measure FragmentationMeasure `json:"measure,omitempty"`

	// Workload pins the expected workload mix. Empty (the default), the
	// plugin learns the mix from the pods it schedules.
	// +optional
	Workload []WorkloadShape `json:"workload,omitempty"`

	// HalfLifePods is how many pods it takes for a learned shape's weight
	// to halve, so that the mix follows a changing workload. Default 2000;
	// 1 to 1000000.
	// +optional
	HalfLifePods *int32 `json:"halfLifePods,omitempty"`

	// CoveragePercent: the learned mix keeps the heaviest shapes until they
	// cover this share of the total weight. Default 100 (up to maxShapes):
	// rare shapes by count can be large ones (8-GPU jobs), which need
	// whole nodes kept for them; 1 to 100.
	// +optional
	CoveragePercent *int32 `json:"coveragePercent,omitempty"`

	// MaxShapes caps the shapes the measure weighs, pinned or learned.
	// Default 128; 1 to 1024.
	// +optional
	MaxShapes *int32 `json:"maxShapes,omitempty"`

	// GPUCountExponent: a shape of k GPUs weighs its pod count (learned or
	// pinned) divided by k to this power. 0 is FGD's weighting, by pod count
	// alone. A shape that does not fit counts all of a node's free
	// capacity as its fragment, so multi-GPU shapes, which fit few partly
	// used nodes, would otherwise outweigh the shares and single GPUs that
	// fill those nodes; on the Alibaba 2023 trace 2 allocates the most
	// (docs/fragmentation.md). Default 2; 0 to 4.
	// +optional
	GPUCountExponent *int32 `json:"gpuCountExponent,omitempty"`
}

// SetDefaultsGPUFragmentationArgs fills unset fields.
func SetDefaultsGPUFragmentationArgs(a *GPUFragmentationArgs) {
	setDefault := func(p **int32, v int32) {
		if *p == nil {
			*p = &v
		}
	}
	if a.Measure == "" {
		a.Measure = MeasureBoth
	}
	setDefault(&a.HalfLifePods, 2000)
	setDefault(&a.CoveragePercent, 100)
	setDefault(&a.MaxShapes, 128)
	setDefault(&a.GPUCountExponent, 2)
}

// ValidateGPUFragmentationArgs checks defaulted args; errors name the field
// under path.
func ValidateGPUFragmentationArgs(path *field.Path, a *GPUFragmentationArgs) field.ErrorList {
	var errs field.ErrorList
	if measures := []FragmentationMeasure{MeasureBoth, MeasureCopies, MeasureFGD}; !slices.Contains(measures, a.Measure) {
		errs = append(errs, field.NotSupported(path.Child("measure"), a.Measure, measures))
	}
	inRange := func(p *field.Path, v *int32, lo, hi int32) {
		if v != nil && (*v < lo || *v > hi) {
			errs = append(errs, field.Invalid(p, *v, fmtRange(lo, hi)))
		}
	}
	inRange(path.Child("halfLifePods"), a.HalfLifePods, 1, 1_000_000)
	inRange(path.Child("coveragePercent"), a.CoveragePercent, 1, 100)
	inRange(path.Child("maxShapes"), a.MaxShapes, 1, 1024)
	inRange(path.Child("gpuCountExponent"), a.GPUCountExponent, 0, 4)
	for i, s := range a.Workload {
		p := path.Child("workload").Index(i)
		if s.CPUMilli < 0 {
			errs = append(errs, field.Invalid(p.Child("cpuMilli"), s.CPUMilli, "must not be negative"))
		}
		if s.GPUs < 0 || s.GPUs > 64 {
			errs = append(errs, field.Invalid(p.Child("gpus"), s.GPUs, fmtRange(0, 64)))
		}
		if s.GPUMilli != 0 && (s.GPUMilli < 1 || s.GPUMilli > 999 || s.GPUs != 1) {
			errs = append(errs, field.Invalid(p.Child("gpuMilli"), s.GPUMilli, "a share is 1 to 999 milli-GPUs of one GPU (gpus: 1)"))
		}
		inRange(p.Child("weight"), &s.Weight, 1, 1_000_000)
	}
	return errs
}

func fmtRange(lo, hi int32) string { return fmt.Sprintf("must be between %d and %d", lo, hi) }

// DecodeGPUFragmentationArgs reads the plugin's pluginConfig args strictly,
// applies defaults and validates them.
func DecodeGPUFragmentationArgs(obj runtime.Object) (*GPUFragmentationArgs, error) {
	return decodeArgs("GPUFragmentation", obj, SetDefaultsGPUFragmentationArgs, ValidateGPUFragmentationArgs)
}
