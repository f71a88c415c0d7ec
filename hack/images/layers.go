package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BinDir is where an image's entrypoint lives (on its PATH).
const BinDir = "/usr/local/bin"

// layer collects a tar of files, directories and links, all owned by root
// unless said otherwise, stamped with one time.
type layer struct {
	buf bytes.Buffer
	tw  *tar.Writer
	at  time.Time
}

func newLayer(at time.Time) *layer {
	l := &layer{at: at}
	l.tw = tar.NewWriter(&l.buf)
	return l
}

func (l *layer) dir(name string, mode int64, uid int) error {
	return l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: l.at, Format: tar.FormatPAX})
}

func (l *layer) file(name string, mode int64, data []byte) error {
	if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: l.at, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := l.tw.Write(data)
	return err
}

func (l *layer) symlink(name, target string) error {
	return l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: l.at, Format: tar.FormatPAX})
}

func (l *layer) done() (v1.Layer, error) {
	if err := l.tw.Close(); err != nil {
		return nil, err
	}
	data := l.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// baseLayer is what every image has: root and the non-root user, and a
// writable /tmp (pods mount an emptyDir there when the root file system is
// read-only).
func baseLayer(at time.Time) (v1.Layer, error) {
	l := newLayer(at)
	steps := []func() error{
		func() error { return l.dir("etc", 0o755, 0) },
		func() error {
			return l.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
		},
		func() error { return l.file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")) },
		func() error { return l.dir("home", 0o755, 0) },
		func() error { return l.dir("home/nonroot", 0o700, 65532) },
		func() error { return l.dir("root", 0o700, 0) },
		func() error { return l.dir("tmp", 0o1777, 0) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return l.done()
}

// glibcLayer is the C library a cgo binary needs, taken from this machine's
// Debian libc6 package (its shared libraries and copyright), laid out as a
// merged /usr: /lib and /lib64 link to /usr/lib and /usr/lib64, and the
// binary's ELF interpreter resolves to the package's loader.
func glibcLayer(at time.Time, binary string) (v1.Layer, error) {
	triplet, ok := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	if !ok {
		return nil, fmt.Errorf("no glibc layout known for %s", runtime.GOARCH)
	}
	interp, err := interpreter(binary)
	if err != nil {
		return nil, err
	}
	// libc6 of the build's architecture: a multi-arch host has more than one.
	arch, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg --print-architecture (the node agent's image takes glibc from Debian's package): %w", err)
	}
	listed, err := exec.Command("dpkg", "-L", "libc6:"+strings.TrimSpace(string(arch))).Output()
	if err != nil {
		return nil, fmt.Errorf("listing the libc6 package (dpkg -L libc6; the node agent's image takes glibc from Debian's package): %w", err)
	}
	libDir := "/lib/" + triplet + "/"
	l := newLayer(at)
	for _, d := range []string{"usr", "usr/lib", "usr/lib/" + triplet, "usr/lib64", "usr/share", "usr/share/doc", "usr/share/doc/libc6"} {
		if err := l.dir(d, 0o755, 0); err != nil {
			return nil, err
		}
	}
	var libs []string
	for _, f := range strings.Split(string(listed), "\n") {
		// The libraries themselves, not gconv's modules below them.
		name, isLib := strings.CutPrefix(strings.TrimPrefix(f, "/usr"), libDir)
		if !isLib || name == "" || strings.Contains(name, "/") {
			continue
		}
		if info, err := os.Stat(libDir + name); err == nil && info.Mode().IsRegular() {
			libs = append(libs, name)
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("the libc6 package lists no libraries in %s", libDir)
	}
	for _, name := range libs {
		data, err := os.ReadFile(libDir + name)
		if err != nil {
			return nil, err
		}
		if err := l.file("usr/lib/"+triplet+"/"+name, 0o755, data); err != nil {
			return nil, err
		}
	}
	copyright, err := os.ReadFile("/usr/share/doc/libc6/copyright")
	if err != nil {
		return nil, err
	}
	if err := l.file("usr/share/doc/libc6/copyright", 0o644, copyright); err != nil {
		return nil, err
	}
	for _, link := range []struct{ name, target string }{{"lib", "usr/lib"}, {"lib64", "usr/lib64"}} {
		if err := l.symlink(link.name, link.target); err != nil {
			return nil, err
		}
	}
	// /lib64/ld-linux-x86-64.so.2 is /usr/lib64/ld-linux-x86-64.so.2 here.
	loader := "/usr/lib/" + triplet + "/" + path.Base(interp)
	if merged := "/usr" + interp; !strings.HasPrefix(interp, "/usr/") && merged != loader {
		if err := l.symlink(strings.TrimPrefix(merged, "/"), loader); err != nil {
			return nil, err
		}
	}
	return l.done()
}

// interpreter is a dynamically linked binary's ELF interpreter (the loader).
func interpreter(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", fmt.Errorf("%s is linked statically: it needs no glibc layer", binary)
}

// binaryLayer puts the component's binary at BinDir.
func binaryLayer(at time.Time, name, binary string) (v1.Layer, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	l := newLayer(at)
	for _, d := range []string{"usr", "usr/local", "usr/local/bin"} {
		if err := l.dir(d, 0o755, 0); err != nil {
			return nil, err
		}
	}
	if err := l.file(strings.TrimPrefix(BinDir, "/")+"/"+name, 0o755, data); err != nil {
		return nil, err
	}
	return l.done()
}
