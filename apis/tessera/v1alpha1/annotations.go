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

// ParseGPUIDs parses an AnnotationGPUIDs value: sorted, without duplicates.
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
		ids = append(ids, i)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// FormatGPUIDs writes an AnnotationGPUIDs value.
func FormatGPUIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}
