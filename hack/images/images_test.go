package main

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var imagesDir = flag.String("images", "../../_output/images", "where make images wrote the images")

// version is the one the images must carry: the repository's VERSION.
func version(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestImages opens each image make images built, in both forms, checks
// what it runs and as whom, and runs its binary from the image's own
// files: --version must name the release.
func TestImages(t *testing.T) {
	want := version(t)
	for _, c := range Components {
		t.Run(c.name, func(t *testing.T) {
			img := fromLayout(t, filepath.Join(*imagesDir, c.name), Ref(c.name, want))
			fromTar, err := tarball.ImageFromPath(filepath.Join(*imagesDir, c.name+".tar"), nil)
			if err != nil {
				t.Fatalf("the tarball: %v", err)
			}
			if a, b := digest(t, img), digest(t, fromTar); a != b {
				t.Errorf("the layout holds %s, the tarball %s", a, b)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			entry := BinDir + "/" + c.binary
			if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entry {
				t.Errorf("entrypoint %v, want [%s]", cf.Config.Entrypoint, entry)
			}
			if cf.Config.User != NonRootUser {
				t.Errorf("user %q, want %q", cf.Config.User, NonRootUser)
			}
			if got := cf.Config.Labels["org.opencontainers.image.version"]; got != want {
				t.Errorf("version label %q, want %q", got, want)
			}
			if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
			}
			root := extract(t, img)
			if passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
				t.Errorf("etc/passwd has no user 65532 (%v)", err)
			}
			bin := filepath.Join(root, entry)
			out := runFromImage(t, root, bin, c, cf.Config.User)
			if !regexp.MustCompile(regexp.QuoteMeta(want) + ` \(commit [0-9a-f]{12}`).MatchString(out) {
				t.Errorf("%s --version printed %q, want the release %s and its commit", c.binary, out, want)
			}
			if c.kubeScheduler && !regexp.MustCompile(`(?m)^Kubernetes v1\.\d+\.\d+$`).MatchString(out) {
				t.Errorf("%s --version printed %q, want kube-scheduler's Kubernetes release too", c.binary, out)
			}
		})
	}
}

// runFromImage runs the binary's --version as the manifests run it:
// chrooted into its extracted file system (nothing of this machine's, the
// node agent's loader and libraries included), as the image's user, with a
// read-only root file system (readOnlyRootFilesystem: every directory made
// unwritable to that user). Needs root, as the integration tests do.
func runFromImage(t *testing.T, root, bin string, c component, user string) string {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if dynamic != c.cgo {
		t.Errorf("%s dynamically linked: %v, want %v", c.binary, dynamic, c.cgo)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("running %s from its image needs root (chroot)", c.binary)
	}
	var uid, gid uint32
	if _, err := fmt.Sscanf(user, "%d:%d", &uid, &gid); err != nil {
		t.Fatalf("image user %q: %v", user, err)
	}
	// The test's own directories above the extracted root must let that
	// user through (the temporary directory's parents are left alone).
	for dir := root; dir != filepath.Clean(os.TempDir()) && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == root {
			return err
		}
		return os.Chmod(p, 0o555)
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(strings.TrimPrefix(bin, root), "--version")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + BinDir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version in its image as %s: %v\n%s", c.binary, user, err, out)
	}
	return string(out)
}

func fromLayout(t *testing.T, dir, ref string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("the OCI layout (run make images first): %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("%s holds no image tagged %s", dir, ref)
	return nil
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// extract writes the image's flattened file system under a temporary dir.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			// With the image's mode and owner (a sticky /tmp, the
			// non-root user's home): the binaries run as that user.
			mode := h.FileInfo().Mode()
			if err = os.MkdirAll(dst, 0o755); err == nil {
				err = errors.Join(os.Chmod(dst, mode.Perm()|mode&os.ModeSticky), os.Lchown(dst, h.Uid, h.Gid))
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, dst)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755); err == nil {
				_, err = io.Copy(f, tr)
				err = errors.Join(err, f.Close())
			}
		}
		if err != nil {
			t.Fatalf("extracting %s: %v", h.Name, err)
		}
	}
}

// TestManifestsNameTheBuiltImages: every Tessera image a manifest pulls is
// one make images builds, at this VERSION.
func TestManifestsNameTheBuiltImages(t *testing.T) {
	want := version(t)
	built := map[string]bool{}
	for _, c := range Components {
		built[Ref(c.name, want)] = true
	}
	image := regexp.MustCompile(`(?m)^\s*(?:-\s*)?image:\s*"?([^"\s]+)`)
	named := 0
	err := filepath.WalkDir("../../manifests", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range image.FindAllStringSubmatch(string(b), -1) {
			if !strings.HasPrefix(m[1], Registry+"/") {
				continue
			}
			named++
			if !built[m[1]] {
				t.Errorf("%s pulls %s, which make images does not build (it builds %v)", p, m[1], keys(built))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if named < len(Components) {
		t.Errorf("the manifests name %d Tessera images, want at least %d", named, len(Components))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
