package webhook_test

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/webhook"
)

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"https://shop.example/hooks", "http://203.0.113.9:8080/x?y=1", "https://[2001:4860::8888]/h"} {
		if err := webhook.CheckURL(u, false); err != nil {
			t.Errorf("CheckURL(%q) = %v, want nil", u, err)
		}
	}
	private := []string{"http://127.0.0.1:9000/", "http://localhost/", "http://api.localhost/", "http://10.1.2.3/", "http://192.168.0.1/",
		"http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fd00::1]/", "http://0.0.0.0/",
		"http://100.64.0.1/", "http://[::ffff:127.0.0.1]/"}
	for _, u := range private {
		if err := webhook.CheckURL(u, false); err == nil {
			t.Errorf("CheckURL(%q) allowed a private destination", u)
		}
		if err := webhook.CheckURL(u, true); err != nil {
			t.Errorf("CheckURL(%q, allowPrivate) = %v", u, err)
		}
	}
	for _, u := range []string{"", "ftp://shop.example/x", "file:///etc/passwd", "gopher://x", "/relative", "https://user:pw@shop.example/",
		"https://shop.example/#frag", "https:///nohost", strings.Repeat("h", 3000)} {
		if err := webhook.CheckURL(u, true); err == nil {
			t.Errorf("CheckURL(%q) allowed a malformed URL", u)
		}
	}
}
