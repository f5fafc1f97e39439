"""The contracts: messages on the streams and the HTTP API's models, as versioned pydantic models."""
