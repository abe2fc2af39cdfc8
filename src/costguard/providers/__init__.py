"""Provider clients: the official SDKs behind one `Provider` interface."""
