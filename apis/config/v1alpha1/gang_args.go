package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// GangArgs configures the Gang plugin.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type GangArgs struct {
	metav1.TypeMeta `json:",inline"`

	// DefaultScheduleTimeoutSeconds is how long a gang's placed members may
	// hold their nodes waiting for the rest, for PodGroups that set no
	// scheduleTimeoutSeconds. After it, everything the gang holds is released.
	// Default 60; 1 to 3600.
	// +optional
	DefaultScheduleTimeoutSeconds *int32 `json:"defaultScheduleTimeoutSeconds,omitempty"`

	// Preemption lets a pod or gang evict whole lower-priority gangs (and
	// single pods) when nothing else makes it fit. Default true.
	// +optional
	Preemption *bool `json:"preemption,omitempty"`
}

// SetDefaultsGangArgs fills unset fields.
func SetDefaultsGangArgs(a *GangArgs) {
	if a.DefaultScheduleTimeoutSeconds == nil {
		v := int32(60)
		a.DefaultScheduleTimeoutSeconds = &v
	}
	if a.Preemption == nil {
		v := true
		a.Preemption = &v
	}
}

// ValidateGangArgs checks defaulted args; errors name the field under path.
func ValidateGangArgs(path *field.Path, a *GangArgs) field.ErrorList {
	var errs field.ErrorList
	if t := a.DefaultScheduleTimeoutSeconds; t != nil && (*t < 1 || *t > 3600) {
		errs = append(errs, field.Invalid(path.Child("defaultScheduleTimeoutSeconds"), *t, "must be between 1 and 3600"))
	}
	return errs
}

// DecodeGangArgs reads the plugin's pluginConfig args strictly (unknown
// fields are errors), applies defaults and validates them.
func DecodeGangArgs(obj runtime.Object) (*GangArgs, error) {
	return decodeArgs("Gang", obj, SetDefaultsGangArgs, ValidateGangArgs)
}
