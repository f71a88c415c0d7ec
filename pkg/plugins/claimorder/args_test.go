package claimorder

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func rawArgs(json string) runtime.Object {
	return &runtime.Unknown{Raw: []byte(json), ContentType: runtime.ContentTypeJSON}
}

func TestDecodeArgsDefaultsAsKubeScheduler(t *testing.T) {
	args, err := decodeArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if args.FilterTimeout == nil || args.FilterTimeout.Duration == 0 {
		t.Errorf("filterTimeout %v, want kube-scheduler's default", args.FilterTimeout)
	}
	args, err = decodeArgs(rawArgs(`{"filterTimeout": "3s"}`))
	if err != nil || args.FilterTimeout == nil || args.FilterTimeout.Duration.String() != "3s" {
		t.Errorf("filterTimeout from args: %v, %v; want 3s", args.FilterTimeout, err)
	}
	if _, err := decodeArgs(rawArgs(`{"filterTimeout": 3}`)); err == nil {
		t.Error("a number for filterTimeout was accepted")
	}
}
