package helm

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// MaxRelease is the most a release may hold once decompressed. Istio's largest chart (istiod) stores
// about 1 MiB; a release Secret is at most 1 MiB of gzip, which can hide gigabytes: anyone able to
// write a Secret labelled as Helm's could otherwise make every read of releases run out of memory.
const MaxRelease = 16 << 20

// bounded is the Secrets client helm's storage driver reads releases through: a release Secret
// whose payload is over MaxRelease decompressed is left out (and named in Skipped) before helm
// decodes it without a bound.
type bounded struct {
	typedcorev1.SecretInterface
	skipped *[]string
}

func (b bounded) List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error) {
	l, err := b.SecretInterface.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	kept := l.Items[:0]
	for _, s := range l.Items {
		if err := fits(s.Data["release"]); err != nil {
			*b.skipped = append(*b.skipped, fmt.Sprintf("helm release Secret %s/%s skipped: %v", s.Namespace, s.Name, err))
			continue
		}
		kept = append(kept, s)
	}
	l.Items = kept
	return l, nil
}

func (b bounded) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error) {
	s, err := b.SecretInterface.Get(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	if err := fits(s.Data["release"]); err != nil {
		return nil, fmt.Errorf("helm release Secret %s/%s: %w", s.Namespace, name, err)
	}
	return s, nil
}

// fits says whether a stored release (base64 of gzip, as helm writes it) decompresses within MaxRelease.
func fits(data []byte) error {
	raw, err := base64.StdEncoding.DecodeString(string(data))
	if err != nil {
		return fmt.Errorf("not a helm release: %v", err)
	}
	if len(raw) > MaxRelease {
		return fmt.Errorf("over %d MiB", MaxRelease>>20)
	}
	if len(raw) < 3 || !bytes.Equal(raw[:3], []byte{0x1f, 0x8b, 0x08}) {
		return nil
	}
	z, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("not a helm release: %v", err)
	}
	defer z.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(z, MaxRelease+1))
	if err != nil {
		return fmt.Errorf("not a helm release: %v", err)
	}
	if n > MaxRelease {
		return fmt.Errorf("over %d MiB once decompressed", MaxRelease>>20)
	}
	return nil
}
