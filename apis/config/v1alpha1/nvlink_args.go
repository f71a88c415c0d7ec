package v1alpha1

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// GPULocality is how close together a pod's GPUs must be on their node.
type GPULocality string

const (
	// GPULocalityNone accepts any free GPUs; the best set is still preferred.
	GPULocalityNone GPULocality = "none"
	// GPULocalityNVLinkIsland requires all of a pod's GPUs in one NVLink
	// island (connected by NVLink, directly or through NVSwitch).
	GPULocalityNVLinkIsland GPULocality = "nvlink-island"
)

// GPULocalities are the accepted values, in the order docs list them.
var GPULocalities = []GPULocality{GPULocalityNone, GPULocalityNVLinkIsland}

// MissingTopologyPolicy is what the scheduler does with a GPU node whose
// GPUNodeTopology is missing or stale.
type MissingTopologyPolicy string

const (
	// MissingTopologyCountOnly schedules on the node by GPU count alone (the
	// device plugin picks the GPUs) and records a warning event on the pod.
	MissingTopologyCountOnly MissingTopologyPolicy = "CountOnly"
	// MissingTopologyUnschedulable keeps GPU pods off the node.
	MissingTopologyUnschedulable MissingTopologyPolicy = "Unschedulable"
)

// MissingTopologyPolicies are the accepted values, in the order docs list
// them.
var MissingTopologyPolicies = []MissingTopologyPolicy{MissingTopologyCountOnly, MissingTopologyUnschedulable}

// DefaultTopologyStaleAfterSeconds is the default TopologyStaleAfterSeconds.
const DefaultTopologyStaleAfterSeconds = 900

// DefaultGangTopologyKeys are the node labels that group nodes into
// domains for multi-node gangs, narrowest first: a multi-node NVLink domain
// (set by GPU feature discovery), a rack, a block of racks.
var DefaultGangTopologyKeys = []string{"nvidia.com/gpu.clique", "tessera.dev/rack", "tessera.dev/block"}

// NVLinkTopologyArgs configures the NVLinkTopology plugin.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type NVLinkTopologyArgs struct {
	metav1.TypeMeta `json:",inline"`

	// DefaultLocality applies to pods without the tessera.dev/gpu-locality
	// annotation: "none" (default) or "nvlink-island".
	// +optional
	DefaultLocality GPULocality `json:"defaultLocality,omitempty"`

	// MissingTopology is what to do with a node that has GPUs but no fresh
	// GPUNodeTopology: "CountOnly" (default) or "Unschedulable".
	// +optional
	MissingTopology MissingTopologyPolicy `json:"missingTopology,omitempty"`

	// TopologyStaleAfterSeconds is how old a GPUNodeTopology heartbeat may
	// be before the node counts as missing its topology. The node agent
	// beats every 5 minutes. Default 900; 60 to 86400.
	// +optional
	TopologyStaleAfterSeconds *int32 `json:"topologyStaleAfterSeconds,omitempty"`

	// GangTopologyKeys are node label keys, narrowest domain first, by
	// which a multi-node gang is kept together: the planner puts it inside
	// one domain of the first key where one can hold it, else on the
	// fewest domains of the last key. Default: nvidia.com/gpu.clique,
	// tessera.dev/rack, tessera.dev/block.
	// +optional
	GangTopologyKeys []string `json:"gangTopologyKeys,omitempty"`
}

// SetDefaultsNVLinkTopologyArgs fills unset fields.
func SetDefaultsNVLinkTopologyArgs(a *NVLinkTopologyArgs) {
	if a.DefaultLocality == "" {
		a.DefaultLocality = GPULocalityNone
	}
	if a.MissingTopology == "" {
		a.MissingTopology = MissingTopologyCountOnly
	}
	if a.TopologyStaleAfterSeconds == nil {
		v := int32(DefaultTopologyStaleAfterSeconds)
		a.TopologyStaleAfterSeconds = &v
	}
	if a.GangTopologyKeys == nil {
		a.GangTopologyKeys = slices.Clone(DefaultGangTopologyKeys)
	}
}

// ValidateNVLinkTopologyArgs checks defaulted args; errors name the field
// under path.
func ValidateNVLinkTopologyArgs(path *field.Path, a *NVLinkTopologyArgs) field.ErrorList {
	var errs field.ErrorList
	if !slices.Contains(GPULocalities, a.DefaultLocality) {
		errs = append(errs, field.NotSupported(path.Child("defaultLocality"), a.DefaultLocality, GPULocalities))
	}
	if !slices.Contains(MissingTopologyPolicies, a.MissingTopology) {
		errs = append(errs, field.NotSupported(path.Child("missingTopology"), a.MissingTopology, MissingTopologyPolicies))
	}
	if s := a.TopologyStaleAfterSeconds; s != nil && (*s < 60 || *s > 86400) {
		errs = append(errs, field.Invalid(path.Child("topologyStaleAfterSeconds"), *s, "must be between 60 and 86400"))
	}
	seen := map[string]bool{}
	for i, key := range a.GangTopologyKeys {
		p := path.Child("gangTopologyKeys").Index(i)
		for _, msg := range validation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(p, key, msg))
		}
		if seen[key] {
			errs = append(errs, field.Duplicate(p, key))
		}
		seen[key] = true
	}
	return errs
}

// ParseGPULocality reads a locality from the pod annotation.
func ParseGPULocality(s string) (GPULocality, error) {
	if l := GPULocality(s); slices.Contains(GPULocalities, l) {
		return l, nil
	}
	return "", fmt.Errorf("%q is not a GPU locality; want one of %q", s, GPULocalities)
}

// DecodeNVLinkTopologyArgs reads the plugin's pluginConfig args strictly
// (unknown fields are errors), applies defaults and validates them.
func DecodeNVLinkTopologyArgs(obj runtime.Object) (*NVLinkTopologyArgs, error) {
	return decodeArgs("NVLinkTopology", obj, SetDefaultsNVLinkTopologyArgs, ValidateNVLinkTopologyArgs)
}
