// Package v1alpha1 holds Tessera's API types, group tessera.dev.
//
// +kubebuilder:object:generate=true
// +groupName=tessera.dev
package v1alpha1
