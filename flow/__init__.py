"""The chat flow (Prompt flow) and the plain endpoint client it is built on."""
