package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"tessera.dev/tessera/internal/gpunodes"
)

// readManifests decodes every object of every .yaml file in dir.
func readManifests(scheme *runtime.Scheme, dir string) ([]ctrlclient.Object, error) {
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
		fileObjs, err := readManifestFile(decoder, file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objs = append(objs, fileObjs...)
	}
	return objs, nil
}

func readManifestFile(decoder runtime.Decoder, file string) ([]ctrlclient.Object, error) {
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
		if strings.TrimSpace(string(doc)) == "" {
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

// printPlacements prints one row per pod: GPUs asked, node, its shape and rack, outcome.
func printPlacements(out io.Writer, client kubernetes.Interface, pods []*corev1.Pod) error {
	nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	byName := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tGPUS\tNODE\tSHAPE\tRACK\tSTATUS")
	for _, p := range pods {
		node, shape, rack := "-", "-", "-"
		if n, ok := byName[p.Spec.NodeName]; ok {
			node, shape, rack = n.Name, n.Labels[gpunodes.LabelShape], n.Labels[gpunodes.LabelRack]
		}
		status := string(p.Status.Phase)
		if c := podScheduledCondition(p); c != nil && c.Status == corev1.ConditionFalse {
			status = fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", p.Name, requestedGPUs(p), node, shape, rack, status)
	}
	return w.Flush()
}

func requestedGPUs(p *corev1.Pod) int64 {
	var total int64
	for _, c := range p.Spec.Containers {
		q, ok := c.Resources.Limits[gpunodes.ResourceGPU]
		if !ok {
			q = c.Resources.Requests[gpunodes.ResourceGPU]
		}
		total += q.Value()
	}
	return total
}
