package quota

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		data map[string]string
		want string // error substring; "" for none
	}{
		{map[string]string{LedgerKey: `{"reservations":[{"uid":"u","name":"a","quantity":3,"at":"2026-11-30T08:00:00Z"}]}`}, ""},
		{map[string]string{}, "data key reservations.json is missing"},
		{map[string]string{LedgerKey: `{"reservations":`}, "data key reservations.json"},
		{map[string]string{LedgerKey: `{"reservations":[{"quantity":"many"}]}`}, "data key reservations.json"},
	} {
		rs, err := decode(&corev1.ConfigMap{Data: tc.data})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("decode(%v): %v", tc.data, err)
		case tc.want == "" && (len(rs) != 1 || rs[0].Quantity != 3):
			t.Errorf("decode(%v) = %+v", tc.data, rs)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("decode(%v) error %v, want one containing %q", tc.data, err, tc.want)
		}
	}
}
