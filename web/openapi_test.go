package web_test

import (
	"context"
	"testing"

	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/contract"
)

func TestOpenAPIDescriptionIsValid(t *testing.T) {
	if _, err := contract.Load(context.Background(), web.OpenAPI); err != nil {
		t.Fatal(err)
	}
}
