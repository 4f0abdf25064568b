"""Chat data: the format the fine-tune expects, and its preparation from ultrachat_200k."""
