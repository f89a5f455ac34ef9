"""The task ``tweet_sentiment``: real tweets labelled positive or negative by people (``task.py``)."""

from adalora_scores.tasks.tweet_sentiment.task import (
    TWEET_TASK,
    TweetTask,
    corpus_path,
    tweet_examples,
    write_tweet_task,
)

__all__ = ["TWEET_TASK", "TweetTask", "corpus_path", "tweet_examples", "write_tweet_task"]
