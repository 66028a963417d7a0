"""Operations on a whole lake (issue 21): takedown of a video or speaker, lake maintenance."""
