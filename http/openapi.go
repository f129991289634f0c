package http

var openAPI = []byte("{}")
