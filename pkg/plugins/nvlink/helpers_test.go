package nvlink

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
)

var klogDiscard = klog.Background().V(10)

func unknown(raw string) runtime.Object {
	return &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}
}
