package mock

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// control serves /_mock/*.
func (s *Server) control(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	switch string(ctx.Path()) {
	case "/_mock/stats":
		if ctx.IsGet() {
			b, _ := json.Marshal(s.Stats())
			ctx.SetBody(b)
			return
		}
	case "/_mock/cache":
		if ctx.IsDelete() {
			s.FlushPromptCache()
			ctx.SetBodyString("{}")
			return
		}
	case "/_mock/config":
		switch {
		case ctx.IsGet():
			b, _ := json.Marshal(s.Config())
			ctx.SetBody(b)
			return
		case ctx.IsPut():
			cfg := s.Config()
			if err := json.Unmarshal(ctx.PostBody(), &cfg); err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, "bad config: "+err.Error())
				return
			}
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, err.Error())
				return
			}
			s.SetConfig(cfg)
			b, _ := json.Marshal(cfg)
			ctx.SetBody(b)
			return
		}
	default:
		controlError(ctx, fasthttp.StatusNotFound, "no such control endpoint")
		return
	}
	controlError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
}

func controlError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(map[string]map[string]string{"error": {"message": msg}})
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}
