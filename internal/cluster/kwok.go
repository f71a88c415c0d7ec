package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

// kwokStages are the lifecycle stages kwok plays for simulated nodes and
// pods: nodes turn Ready at once, bound pods turn Running, Job pods complete,
// deleted pods go away. kwok exits with "no stages found" without them.
func kwokStages() string {
	return strings.Join([]string{
		nodefast.DefaultNodeInit,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}, "\n---\n")
}

func startKwok(ctx context.Context, binDir, workDir, kubeconfig string) (*process, error) {
	stagesPath := filepath.Join(workDir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesPath, []byte(kwokStages()), 0o644); err != nil {
		return nil, fmt.Errorf("writing kwok stages: %w", err)
	}
	return startProcess(ctx, "kwok", workDir, filepath.Join(binDir, "kwok"),
		"--kubeconfig="+kubeconfig,
		"--config="+stagesPath,
		"--manage-all-nodes=true",
		// Simulated nodes report loopback, so nothing ever dials elsewhere.
		"--node-ip=127.0.0.1",
		"--cidr=10.0.0.1/16",
	)
}
