package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageOf lays c's binary on its base, with the OCI labels that say what it
// is and which commit it came from.
func imageOf(c component, version, binary, rev string, unix int64) (v1.Image, error) {
	at := time.Unix(unix, 0).UTC()
	base, err := baseLayer(at)
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{base}
	if c.cgo {
		glibc, err := glibcLayer(at, binary)
		if err != nil {
			return nil, err
		}
		layers = append(layers, glibc)
	}
	bin, err := binaryLayer(at, c.binary, binary)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, append(layers, bin)...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: at}
	cf.Config = v1.Config{
		Entrypoint: []string{BinDir + "/" + c.binary},
		User:       NonRootUser,
		WorkingDir: "/",
		Env:        []string{"PATH=" + BinDir + ":/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "tessera-" + c.name,
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": rev,
			"org.opencontainers.image.created":  at.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// write saves img as an OCI image layout at dir (replacing what was there)
// and as dir.tar, both tagged ref, and says what it wrote.
func write(img v1.Image, ref, dir string) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return "", err
	}
	if err := tarball.WriteToFile(dir+".tar", tag, img); err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	info, err := os.Stat(dir + ".tar")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s: %s and %s (%.1f MiB)", ref, digest, dir, filepath.Base(dir)+".tar", float64(info.Size())/(1<<20)), nil
}
