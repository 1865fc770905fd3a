raise ImportError("this plugin cannot import its own dependency")
