package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// versionPkg is the package the binaries report their release and commit
// from.
const versionPkg = "tessera.dev/tessera/internal/version"

// build is what the binaries are stamped with.
type build struct {
	version, rev string
	// modified: the tree had uncommitted changes.
	modified bool
	// kubeVersion is the k8s.io/kubernetes release the scheduler is built
	// from, for kube-scheduler's own --version line and the version it
	// reports to the apiserver.
	kubeVersion string
}

// compile builds c's main package into out: static (CGO off) unless the
// component needs cgo, without local paths (-trimpath), stripped, with the
// release and commit stamped in.
func compile(repo string, c component, b build, out string) error {
	ldflags := fmt.Sprintf("-s -w -X %s.release=%s -X %s.commit=%s -X %s.modified=%t", versionPkg, b.version, versionPkg, b.rev, versionPkg, b.modified)
	if c.kubeScheduler {
		ldflags += kubeVersionFlags(b.kubeVersion)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, c.pkg)
	cmd.Dir = repo
	cgo := "0"
	if c.cgo {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo, "GOOS=linux")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", c.pkg, err)
	}
	return nil
}

// kubeVersionFlags stamp component-base's version as
// hack/build-control-plane.sh stamps the apiserver's: unstamped, it reads
// v0.0.0-master+$Format:%H$.
func kubeVersionFlags(v string) string {
	const pkg = "k8s.io/component-base/version"
	var minor string
	if parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3); len(parts) > 1 {
		minor = parts[1]
	}
	return fmt.Sprintf(" -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean", pkg, v, pkg, pkg, minor, pkg)
}

// moduleVersion is the version of module the repository's go.mod selects.
func moduleVersion(repo, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = repo
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// dirty reports whether the repository has uncommitted changes to tracked files.
func dirty(repo string) (bool, error) {
	cmd := exec.Command("git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = repo
	b, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("git status: %w", err)
	}
	return len(strings.TrimSpace(string(b))) > 0, nil
}

// commit is the repository's HEAD and its commit time (Unix seconds), for
// the images' labels and timestamps: the same commit gives the same layers.
func commit(repo string) (rev string, unix int64, err error) {
	cmd := exec.Command("git", "log", "-1", "--format=%H %ct")
	cmd.Dir = repo
	b, err := cmd.Output()
	if err != nil {
		return "", 0, fmt.Errorf("reading the commit (git log): %w", err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%s %d", &rev, &unix); err != nil {
		return "", 0, fmt.Errorf("reading the commit from %q: %w", b, err)
	}
	return rev, unix, nil
}
