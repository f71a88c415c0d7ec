// Package v1alpha1 holds the versioned arguments of Tessera's scheduler
// plugins, as they appear in a KubeSchedulerConfiguration's pluginConfig,
// with their defaults and validation.
//
// +kubebuilder:object:generate=true
package v1alpha1
