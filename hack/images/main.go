// Command images builds Tessera's container images without a Docker
// engine: each component is compiled by the go command and laid on a
// minimal base (a passwd with a non-root user; for the node agent, glibc
// from this machine's Debian libc6 package), and written as an OCI image
// layout and a tarball (for docker load, ctr import or kind load
// image-archive) under the output folder, tagged REGISTRY/NAME:VERSION.
//
//	go run ./hack/images -repo . -out _output/images -version "$(cat VERSION)"
//
// (make images runs it.) Images are built for the machine's own
// architecture, linux only.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Registry is where the manifests and the chart pull Tessera's images from.
const Registry = "ghcr.io/tessera-dev"

// component is one image: its name, the main package, and how it is built.
type component struct {
	name string
	// pkg is the main package, relative to the repository.
	pkg string
	// binary is the entrypoint's file name, at the image's root.
	binary string
	// cgo components link glibc dynamically, so their image carries it.
	cgo bool
	// kubeScheduler is kube-scheduler's command, which reports the
	// Kubernetes release it is built from.
	kubeScheduler bool
}

// Components are the images make images builds, in build order.
var Components = []component{
	{name: "scheduler", pkg: "./cmd/scheduler", binary: "tessera-scheduler", kubeScheduler: true},
	// go-nvml loads libnvidia-ml.so.1 at run time through cgo's dlopen; the
	// NVIDIA container toolkit mounts that library (and /dev/nvidia*) in.
	{name: "node-agent", pkg: "./cmd/node-agent", binary: "node-agent", cgo: true},
	{name: "launcher", pkg: "./cmd/launcher", binary: "launcher"},
}

// NonRootUser is the user every image runs as unless a pod says otherwise
// (the node agent's DaemonSet runs it as root, for the kubelet's
// PodResources socket). 65532 is distroless's nonroot.
const NonRootUser = "65532:65532"

// Ref is the reference an image is tagged with.
func Ref(name, version string) string { return fmt.Sprintf("%s/%s:%s", Registry, name, version) }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run() error {
	repo := flag.String("repo", ".", "the repository to build from")
	out := flag.String("out", "_output/images", "where the OCI layouts and tarballs are written")
	version := flag.String("version", "", "the version the images are tagged with and the binaries report (required)")
	flag.Parse()
	if *version == "" {
		return fmt.Errorf("--version is required")
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("images are built on linux (this is %s)", runtime.GOOS)
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tessera-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	rev, unix, err := commit(root)
	if err != nil {
		return err
	}
	b := build{version: *version, rev: rev}
	if b.modified, err = dirty(root); err != nil {
		return err
	}
	if b.kubeVersion, err = moduleVersion(root, "k8s.io/kubernetes"); err != nil {
		return err
	}
	for _, c := range Components {
		fmt.Printf("images: building %s\n", Ref(c.name, *version))
		bin := filepath.Join(work, c.binary)
		if err := compile(root, c, b, bin); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		img, err := imageOf(c, *version, bin, rev, unix)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		written, err := write(img, Ref(c.name, *version), filepath.Join(*out, c.name))
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		fmt.Printf("images: %s\n", written)
	}
	return nil
}
