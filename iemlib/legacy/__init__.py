"""The library as it was before the redesign (filed by chapter), kept only while the chapters move
to the new layout. Nothing new may import from here; the folder is deleted when the move is done."""
