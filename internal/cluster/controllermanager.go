package cluster

import (
	"context"
	"path/filepath"
	"strings"
)

// controllers are the kube-controller-manager controllers the stack runs:
// those the workload APIs need to make pods (Jobs, ReplicaSets,
// Deployments, StatefulSets), the ResourceClaims of pods' claim templates,
// garbage collection of owned objects, and namespace deletion. Node lifecycle, pod GC and the disruption controller
// stay off: kwok plays the nodes, and the suites that need budgets keep
// their status themselves.
var controllers = []string{
	"job-controller",
	"replicaset-controller",
	"deployment-controller",
	"statefulset-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"resourceclaim-controller",
}

// startControllerManager runs kube-controller-manager against the stack's
// apiserver, serving nothing (no secure port), without leader election.
func startControllerManager(ctx context.Context, binDir, workDir, kubeconfig string) (*process, error) {
	return startProcess(ctx, "kube-controller-manager", workDir, filepath.Join(binDir, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		// Pods of a Job or ReplicaSet appear at once, as in a test's
		// timeline, not after the default burst limits.
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	)
}
