"""VidChatBench evaluator (issue 19): score generated responder videos against the lake's test split."""
