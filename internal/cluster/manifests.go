package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadManifests decodes every object of every .yaml file in dir, in file name order.
func ReadManifests(scheme *runtime.Scheme, dir string) ([]ctrlclient.Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .yaml files in %s", dir)
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	var objs []ctrlclient.Object
	for _, file := range files {
		fileObjs, err := ReadManifestFile(decoder, file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objs = append(objs, fileObjs...)
	}
	return objs, nil
}

// ReadManifestFile decodes every object of one multi-document YAML file.
func ReadManifestFile(decoder runtime.Decoder, file string) ([]ctrlclient.Object, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	docs := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var objs []ctrlclient.Object
	for {
		doc, err := docs.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if onlyComments(doc) {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, err
		}
		cobj, ok := obj.(ctrlclient.Object)
		if !ok {
			return nil, fmt.Errorf("%T is not an API object", obj)
		}
		objs = append(objs, cobj)
	}
}

// CreateFromFiles creates every object in the given YAML files, decoding
// with the client's scheme; objects that already exist are left as they are.
func CreateFromFiles(ctx context.Context, c ctrlclient.Client, files ...string) error {
	return writeFromFiles(ctx, c, false, files)
}

// ApplyFromFiles is CreateFromFiles, except that an object that exists is
// replaced by the file's.
func ApplyFromFiles(ctx context.Context, c ctrlclient.Client, files ...string) error {
	return writeFromFiles(ctx, c, true, files)
}

func writeFromFiles(ctx context.Context, c ctrlclient.Client, replace bool, files []string) error {
	decoder := serializer.NewCodecFactory(c.Scheme()).UniversalDeserializer()
	for _, file := range files {
		objs, err := ReadManifestFile(decoder, file)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, obj := range objs {
			err := c.Create(ctx, obj)
			if apierrors.IsAlreadyExists(err) && replace {
				existing := obj.DeepCopyObject().(ctrlclient.Object)
				if err = c.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), existing); err == nil {
					obj.SetResourceVersion(existing.GetResourceVersion())
					err = c.Update(ctx, obj)
				}
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: writing %T %s: %w", file, obj, obj.GetName(), err)
			}
		}
	}
	return nil
}

// onlyComments reports whether a YAML document holds nothing but blank
// lines and comments (a license header before the first "---").
func onlyComments(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}
