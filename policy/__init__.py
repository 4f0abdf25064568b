"""The stacks' CrossGuard policy pack (`pulumi preview --policy-pack policy`)."""
