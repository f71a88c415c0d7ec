package launchercli

import (
	"strings"
	"testing"

	"tessera.dev/tessera/pkg/launcher"
)

func TestControllerRejectsTopologyTrustFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{args: []string{"--missing-topology=Sometimes"}, want: `--missing-topology="Sometimes": want one of ["CountOnly" "Unschedulable"]`},
		{args: []string{"--topology-stale-after=30s"}, want: "--topology-stale-after=30s: must be between 1m and 24h"},
		{args: []string{"--topology-stale-after=25h"}, want: "--topology-stale-after=25h0m0s: must be between 1m and 24h"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := runController(t.Context(), tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("runController(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestDefaultTopologyTrustIsValid(t *testing.T) {
	if err := validateTopologyTrust(launcher.DefaultOptions()); err != nil {
		t.Errorf("default options: %v", err)
	}
}
