package main

import (
	"strings"
	"testing"
)

func TestSplitDropsTheHelmManagedByLabel(t *testing.T) {
	rendered := `---
# Source: tessera/templates/namespace.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: tessera-system
  labels:
    app.kubernetes.io/part-of: tessera
    app.kubernetes.io/managed-by: Helm
    helm.sh/chart: "tessera-0.1.0"
---
# Source: tessera/templates/scheduler/config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: tessera-scheduler-config
  labels:
    app.kubernetes.io/managed-by: Helm
data:
  config.yaml: |
    kind: KubeSchedulerConfiguration
`
	files, err := split([]byte(rendered))
	if err != nil {
		t.Fatal(err)
	}
	for path, body := range files {
		if strings.Contains(body, "managed-by") {
			t.Errorf("%s keeps the managed-by label:\n%s", path, body)
		}
	}
	if ns := files["namespace.yaml"]; !strings.Contains(ns, "    app.kubernetes.io/part-of: tessera\n    helm.sh/chart:") {
		t.Errorf("namespace.yaml lost more than the managed-by label:\n%s", ns)
	}
}

// A managed-by label in another form than the one dropped fails the render
// rather than reaching the manifests.
func TestSplitRejectsAManagedByLabelItCannotDrop(t *testing.T) {
	rendered := `---
# Source: tessera/templates/namespace.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: tessera-system
  labels:
    app.kubernetes.io/managed-by: "Helm"
`
	if _, err := split([]byte(rendered)); err == nil || !strings.Contains(err.Error(), "templates/namespace.yaml") {
		t.Fatalf("split = %v, want an error naming templates/namespace.yaml", err)
	}
}
