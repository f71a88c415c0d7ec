package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestDecodeGangArgs(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		wantTimeout int32
		wantPreempt bool
		wantErr     string
	}{
		{name: "defaults", raw: ``, wantTimeout: 60, wantPreempt: true},
		{name: "set", raw: `{"defaultScheduleTimeoutSeconds": 120, "preemption": false}`, wantTimeout: 120, wantPreempt: false},
		{name: "out of range", raw: `{"defaultScheduleTimeoutSeconds": 0}`, wantErr: "args.defaultScheduleTimeoutSeconds: Invalid value: 0: must be between 1 and 3600"},
		{name: "unknown field", raw: `{"scheduleTimeout": 30}`, wantErr: `unknown field "scheduleTimeout"`},
		{name: "wrong type", raw: `{"preemption": "yes"}`, wantErr: "decoding Gang plugin args"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, err := DecodeGangArgs(&runtime.Unknown{Raw: []byte(tc.raw), ContentType: runtime.ContentTypeJSON})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *args.DefaultScheduleTimeoutSeconds != tc.wantTimeout || *args.Preemption != tc.wantPreempt {
				t.Errorf("args = timeout %d, preemption %v; want %d, %v", *args.DefaultScheduleTimeoutSeconds, *args.Preemption, tc.wantTimeout, tc.wantPreempt)
			}
		})
	}
}
