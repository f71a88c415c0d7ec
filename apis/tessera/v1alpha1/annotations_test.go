package v1alpha1

import "testing"

func TestParseGPUIDs(t *testing.T) {
	got, err := ParseGPUIDs(" 3,1, 0")
	if err != nil || FormatGPUIDs(got) != "0,1,3" {
		t.Errorf("ParseGPUIDs = %v, %v; want 0,1,3", got, err)
	}
	for _, bad := range []string{"a", "1,-2", "1;2", "0,0", " 3,1, 1 ,0"} {
		if _, err := ParseGPUIDs(bad); err == nil {
			t.Errorf("ParseGPUIDs(%q) accepted", bad)
		}
	}
}
