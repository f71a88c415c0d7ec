package v1alpha1

import (
	"testing"

	"k8s.io/utils/ptr"
)

func TestDecodeNVLinkTopologyArgs(t *testing.T) {
	runDecodeCases(t, DecodeNVLinkTopologyArgs, []decodeCase[NVLinkTopologyArgs]{
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
	})
}
