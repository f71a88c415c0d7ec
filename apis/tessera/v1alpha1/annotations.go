package v1alpha1

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// AnnotationGPUIDs is the scheduler's GPU assignment on a pod: the NVML
// indexes of its GPUs on its node, comma-separated (e.g. "0,1,2,3"). The
// scheduler writes it before binding; the node agent checks it against what
// the kubelet reports.
const AnnotationGPUIDs = "tessera.dev/gpu-ids"

// AnnotationGPULocality, on a pod, is the locality its GPUs must have on
// their node: "nvlink-island" (all in one NVLink island: NVLink-connected,
// directly or through NVSwitch) or "none". Unset, the scheduler profile's
// default applies.
const AnnotationGPULocality = "tessera.dev/gpu-locality"

// ParseGPUIDs parses an AnnotationGPUIDs value, sorted; a GPU listed twice
// is an error (a pod holds each of its GPUs once).
func ParseGPUIDs(value string) ([]int, error) {
	var ids []int
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i, err := strconv.Atoi(part)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%s=%q: %q is not a GPU index", AnnotationGPUIDs, value, part)
		}
		if slices.Contains(ids, i) {
			return nil, fmt.Errorf("%s=%q: GPU %d is listed twice", AnnotationGPUIDs, value, i)
		}
		ids = append(ids, i)
	}
	slices.Sort(ids)
	return ids, nil
}

// FormatGPUIDs writes an AnnotationGPUIDs value.
func FormatGPUIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

// AnnotationGPUMilli, on a pod, asks for a share of one GPU in milli-GPUs
// (1 to 999; a whole GPU is nvidia.com/gpu: 1). The scheduler picks the GPU
// and records its index in AnnotationGPUIDs; it never lets the shares on one
// GPU exceed 1000. On the node the share is served by the NVIDIA device
// plugin's time-slicing or MPS replicas (docs/fragmentation.md).
const AnnotationGPUMilli = "tessera.dev/gpu-milli"

// AnnotationGPUModels, on a pod, lists the GPU models it may run on,
// comma-separated, as the node agent publishes them (GPUNodeTopology
// status.devices[].model). Unset, any model will do.
const AnnotationGPUModels = "tessera.dev/gpu-models"

// ParseGPUMilli parses an AnnotationGPUMilli value.
func ParseGPUMilli(value string) (int64, error) {
	m, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil || m < 1 || m > 999 {
		return 0, fmt.Errorf("%s=%q: want a share of one GPU from 1 to 999 milli-GPUs (a whole GPU is nvidia.com/gpu: 1)", AnnotationGPUMilli, value)
	}
	return m, nil
}

// ParseGPUModels parses an AnnotationGPUModels value: sorted, without
// duplicates, never empty.
func ParseGPUModels(value string) ([]string, error) {
	var models []string
	for _, part := range strings.Split(value, ",") {
		if part = strings.TrimSpace(part); part != "" {
			models = append(models, part)
		}
	}
	if len(models) == 0 {
		return nil, fmt.Errorf("%s=%q: names no GPU model", AnnotationGPUModels, value)
	}
	slices.Sort(models)
	return slices.Compact(models), nil
}
