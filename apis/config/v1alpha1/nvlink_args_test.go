package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func TestDecodeNVLinkTopologyArgs(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    *NVLinkTopologyArgs
		wantErr string
	}{
		{name: "defaults", raw: ``, want: &NVLinkTopologyArgs{
			DefaultLocality: GPULocalityNone, MissingTopology: MissingTopologyCountOnly,
			TopologyStaleAfterSeconds: ptr.To[int32](900), GangTopologyKeys: DefaultGangTopologyKeys,
		}},
		{name: "serving", raw: `{"defaultLocality": "nvlink-island", "missingTopology": "Unschedulable", "gangTopologyKeys": []}`, want: &NVLinkTopologyArgs{
			DefaultLocality: GPULocalityNVLinkIsland, MissingTopology: MissingTopologyUnschedulable,
			TopologyStaleAfterSeconds: ptr.To[int32](900), GangTopologyKeys: []string{},
		}},
		{name: "bad locality", raw: `{"defaultLocality": "island"}`, wantErr: `args.defaultLocality: Unsupported value: "island": supported values: "none", "nvlink-island"`},
		{name: "bad policy", raw: `{"missingTopology": "Ignore"}`, wantErr: `args.missingTopology: Unsupported value: "Ignore"`},
		{name: "stale too short", raw: `{"topologyStaleAfterSeconds": 5}`, wantErr: "args.topologyStaleAfterSeconds: Invalid value: 5: must be between 60 and 86400"},
		{name: "bad key", raw: `{"gangTopologyKeys": ["tessera.dev/rack", "not a label"]}`, wantErr: "args.gangTopologyKeys[1]: Invalid value"},
		{name: "duplicate key", raw: `{"gangTopologyKeys": ["a", "a"]}`, wantErr: `args.gangTopologyKeys[1]: Duplicate value: "a"`},
		{name: "unknown field", raw: `{"locality": "none"}`, wantErr: `unknown field "locality"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeNVLinkTopologyArgs(&runtime.Unknown{Raw: []byte(tc.raw), ContentType: runtime.ContentTypeJSON})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}
