package v1alpha1

import (
	"testing"

	"k8s.io/utils/ptr"
)

func TestDecodeGangArgs(t *testing.T) {
	runDecodeCases(t, DecodeGangArgs, []decodeCase[GangArgs]{
		{name: "defaults", raw: ``, want: &GangArgs{DefaultScheduleTimeoutSeconds: ptr.To[int32](60), Preemption: ptr.To(true)}},
		{name: "set", raw: `{"defaultScheduleTimeoutSeconds": 120, "preemption": false}`,
			want: &GangArgs{DefaultScheduleTimeoutSeconds: ptr.To[int32](120), Preemption: ptr.To(false)}},
		{name: "out of range", raw: `{"defaultScheduleTimeoutSeconds": 0}`, wantErr: "args.defaultScheduleTimeoutSeconds: Invalid value: 0: must be between 1 and 3600"},
		{name: "unknown field", raw: `{"scheduleTimeout": 30}`, wantErr: `unknown field "scheduleTimeout"`},
		{name: "wrong type", raw: `{"preemption": "yes"}`, wantErr: "decoding Gang plugin args"},
	})
}
